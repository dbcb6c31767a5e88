"""The tables of SPEC v1, in one place: both decoders (native and pure) are driven by them.

The order of the field tables is the order in which an event or header is checked, so both
decoders report the same code when several things are wrong.
"""

from typing import NamedTuple

MAX_EVENTS = 1000
MAX_DEPTH = 64
MAX_ID_BYTES = 128
MAX_ACTION_NAME = 32
CURRENCY_MAX = 999  # ISO 4217 numeric codes are 0-999
DENSITY_MIN = 0.75
DENSITY_MAX = 10.0
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# Field types.
INT = 0  # JSON number without fraction or exponent, inside int64
NUMBER = 1  # any JSON number, read as a double (must be finite)
STRING = 2
BOOL = 3
OBJECT = 4  # an object with its own field table
PARAMS = 5  # custom params: any JSON object, kept as sent
EVENTS = 6  # the `pl` array

# Value checks beyond the type.
ANY = 0
POSITIVE = 1  # >= 1
NON_NEGATIVE = 2  # >= 0
ID = 3  # 1-128 UTF-8 bytes
CURRENCY = 4  # 0-999
DENSITY = 5  # DENSITY_MIN-DENSITY_MAX
ACTION_NAME = 6  # custom action name rule; failing it is `invalid_action_name`
ACTION_CODE = 7  # a code of ACTIONS; failing it is `unknown_action`


class Field(NamedTuple):
    key: str
    type: int
    required: bool = False
    check: int = ANY
    fields: tuple = ()  # sub-fields of an OBJECT


HEADER = (
    Field("pid", INT, True, POSITIVE),
    Field("uid", STRING, True, ID),
    Field("now", INT, True, NON_NEGATIVE),
    Field("pl", EVENTS, True),
    Field("dt", INT),
    Field("dma", STRING),
    Field("dmo", STRING),
    Field("os", STRING),
    Field("l", STRING),
    Field("tz", STRING),
    Field("to", OBJECT, fields=(Field("an", STRING), Field("st", STRING), Field("sf", STRING))),
    Field("r", OBJECT, fields=(Field("d", NUMBER, check=DENSITY),)),
)

COMMON = (
    Field("euid", STRING, True, ID),
    Field("ea", INT, True, ACTION_CODE),
    Field("t", INT, True, NON_NEGATIVE),
    Field("upt", INT),
    Field("url", STRING),
    Field("scn", INT),
    Field("c", INT),
    Field("ci", STRING),
    Field("o", INT),
    Field(
        "vo",
        OBJECT,
        fields=(
            Field("sv", STRING),
            Field("sb", INT),
            Field("av", STRING),
            Field("af", STRING),
            Field("ab", INT),
        ),
    ),
    Field("sn", INT),
)

_TARGET = (Field("tvp", STRING), Field("tvid", STRING))
_GESTURE = _TARGET + (Field("fd", INT), Field("tvd", INT), Field("tvv", INT))

STRING_VARIABLE = 18
INT_VARIABLE = 19
CUSTOM = 20  # custom events: the action is their `ac`, their params their `pr`

# ea -> (action name, fields of its payload, protobuf payload field of Event)
ACTIONS = {
    0: ("app.start", (), None),
    1: ("app.foreground", (), None),
    2: ("app.background", (), None),
    4: ("screen.view", (Field("st", STRING), Field("sl", INT)), "screen_view"),
    6: ("touch.tap", _TARGET + (Field("ur", BOOL),), "tap"),
    8: ("touch.long_press", _TARGET, "long_press"),
    9: ("touch.drag", _GESTURE, "gesture"),
    10: ("touch.swipe", _GESTURE, "gesture"),
    16: (
        "transaction.complete",
        (
            Field(
                "tr",
                OBJECT,
                True,
                fields=(
                    Field("vl", NUMBER, True),
                    Field("cu", INT, True, CURRENCY),
                    Field("id", STRING),
                ),
            ),
        ),
        "transaction",
    ),
    STRING_VARIABLE: ("variable.set", (Field("k", STRING, True), Field("v", STRING, True)), "string_variable"),
    INT_VARIABLE: ("variable.set", (Field("k", STRING, True), Field("v", INT, True)), "int_variable"),
    CUSTOM: (
        None,
        (Field("ac", STRING, True, ACTION_NAME), Field("lb", STRING), Field("pr", PARAMS)),
        "custom",
    ),
}

MAX_ACTION_CODE = max(ACTIONS)

# The event key whose value becomes the normalised `label`, by ea.
LABEL_KEY = {4: "st", 6: "tvid", 8: "tvid", 9: "tvid", 10: "tvid", STRING_VARIABLE: "k",
             INT_VARIABLE: "k", CUSTOM: "lb"}

DEVICE_TYPES = {4: "phone", 5: "tablet"}
CONNECTIVITY = {-1: "offline", 0: "error", 1: "wifi", 2: "2g", 3: "3g", 4: "4g"}
ORIENTATIONS = {0: "portrait", 1: "landscape"}
DIRECTIONS = {1: "up", 2: "down", 3: "left", 4: "right", 5: "complex"}
UNKNOWN = "unknown"

# ----------------------------------------------------------------- the normalised event (SPEC 3)
# Its layout, in one place: the keys of each object in the order they are written, and where
# each value comes from (a header or event key, "to.an" for a sub-object's). Both decoders
# write from these tables, and event.py's Structs are checked against them.

# How a value is made from its source: as it is, an enum's name ("unknown" for another int),
# or a currency's alphabetic code (null when the list has none).
AS_IS = 0
ENUM = 1
CURRENCY_NAME = 2


class Out(NamedTuple):
    name: str  # the key in the normalised event
    source: str  # the header or event key it comes from (dotted inside a sub-object); "": made
    how: int = AS_IS
    table: dict | None = None  # for ENUM
    made: str = ""  # what a made value is, as a Python type (a sourced one's follows its Field)


EVENT = (  # the event's own keys; `device` and `app` are DEVICE's and APP's
    Out("event_id", "euid"),
    Out("action", "", made="str"),  # `ea`'s name, or a custom event's `ac`
    Out("label", "", made="str | None"),  # from LABEL_KEY's key, or a custom event's `lb`
    Out("project_id", "pid"),
    Out("user_id", "uid"),
    Out("session_id", "sn"),
    Out("time", "", made="int"),  # received_time - max(0, sent_time - device_time)
    Out("device_time", "t"),
    Out("sent_time", "now"),
    Out("received_time", "", made="int"),  # when the collector read the batch
    Out("uptime_ms", "upt"),
    Out("url", "url"),
    Out("screen_name", "", made="str | None"),  # the url's `title` parameter, unquoted
    Out("screen_count", "scn"),
    Out("connectivity", "c", ENUM, CONNECTIVITY),
    Out("carrier", "ci"),
    Out("orientation", "o", ENUM, ORIENTATIONS),
    Out("device", "", made="Device"),
    Out("app", "", made="App"),
    Out("params", "", made="dict[str, Any]"),  # ACTION_PARAMS', or a custom event's `pr`
)
EVENT_KEYS = tuple(o.name for o in EVENT)

DEVICE = (  # from the header
    Out("type", "dt", ENUM, DEVICE_TYPES),
    Out("manufacturer", "dma"),
    Out("model", "dmo"),
    Out("os_version", "os"),
    Out("locale", "l"),
    Out("timezone", "tz"),
    Out("density", "r.d"),
)

APP = (  # from the header's `to`, then the event's `vo`
    Out("name", "to.an"),
    Out("sdk_type", "to.st"),
    Out("sdk_flavor", "to.sf"),
    Out("sdk_version", "vo.sv"),
    Out("sdk_build", "vo.sb"),
    Out("version", "vo.av"),
    Out("flavor", "vo.af"),
    Out("build", "vo.ab"),
)

_TARGET_OUT = (Out("target_path", "tvp"), Out("target_id", "tvid"))
_GESTURE_OUT = _TARGET_OUT + (Out("direction", "fd", ENUM, DIRECTIONS), Out("distance", "tvd"),
                              Out("velocity", "tvv"))

# ea -> the keys of its `params`; custom events (CUSTOM) have their `pr` as sent instead.
ACTION_PARAMS = {
    0: (),
    1: (),
    2: (),
    4: (Out("title", "st"), Out("load_time_ms", "sl")),
    6: _TARGET_OUT + (Out("responsive", "ur"),),
    8: _TARGET_OUT,
    9: _GESTURE_OUT,
    10: _GESTURE_OUT,
    16: (Out("value", "tr.vl"), Out("currency_code", "tr.cu"), Out("currency", "tr.cu", CURRENCY_NAME),
         Out("transaction_id", "tr.id")),
    STRING_VARIABLE: (Out("key", "k"), Out("value", "v")),
    INT_VARIABLE: (Out("key", "k"), Out("value", "v")),
}

ACTION_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")

# ISO 4217 numeric code -> alphabetic code, funds and X-codes included.
CURRENCIES = {
    8: "ALL", 12: "DZD", 32: "ARS", 36: "AUD", 44: "BSD", 48: "BHD", 50: "BDT", 51: "AMD",
    52: "BBD", 60: "BMD", 64: "BTN", 68: "BOB", 72: "BWP", 84: "BZD", 90: "SBD", 96: "BND",
    104: "MMK", 108: "BIF", 116: "KHR", 124: "CAD", 132: "CVE", 136: "KYD", 144: "LKR", 152: "CLP",
    156: "CNY", 170: "COP", 174: "KMF", 188: "CRC", 192: "CUP", 203: "CZK", 208: "DKK", 214: "DOP",
    222: "SVC", 230: "ETB", 232: "ERN", 238: "FKP", 242: "FJD", 262: "DJF", 270: "GMD", 292: "GIP",
    320: "GTQ", 324: "GNF", 328: "GYD", 332: "HTG", 340: "HNL", 344: "HKD", 348: "HUF", 352: "ISK",
    356: "INR", 360: "IDR", 364: "IRR", 368: "IQD", 376: "ILS", 388: "JMD", 392: "JPY", 396: "XAD",
    398: "KZT", 400: "JOD", 404: "KES", 408: "KPW", 410: "KRW", 414: "KWD", 417: "KGS", 418: "LAK",
    422: "LBP", 426: "LSL", 430: "LRD", 434: "LYD", 446: "MOP", 454: "MWK", 458: "MYR", 462: "MVR",
    480: "MUR", 484: "MXN", 496: "MNT", 498: "MDL", 504: "MAD", 512: "OMR", 516: "NAD", 524: "NPR",
    532: "XCG", 533: "AWG", 548: "VUV", 554: "NZD", 558: "NIO", 566: "NGN", 578: "NOK", 586: "PKR",
    590: "PAB", 598: "PGK", 600: "PYG", 604: "PEN", 608: "PHP", 634: "QAR", 643: "RUB", 646: "RWF",
    654: "SHP", 682: "SAR", 690: "SCR", 702: "SGD", 704: "VND", 706: "SOS", 710: "ZAR", 728: "SSP",
    748: "SZL", 752: "SEK", 756: "CHF", 760: "SYP", 764: "THB", 776: "TOP", 780: "TTD", 784: "AED",
    788: "TND", 800: "UGX", 807: "MKD", 818: "EGP", 826: "GBP", 834: "TZS", 840: "USD", 858: "UYU",
    860: "UZS", 882: "WST", 886: "YER", 901: "TWD", 924: "ZWG", 925: "SLE", 926: "VED", 927: "UYW",
    928: "VES", 929: "MRU", 930: "STN", 933: "BYN", 934: "TMT", 936: "GHS", 938: "SDG", 940: "UYI",
    941: "RSD", 943: "MZN", 944: "AZN", 946: "RON", 947: "CHE", 948: "CHW", 949: "TRY", 950: "XAF",
    951: "XCD", 952: "XOF", 953: "XPF", 955: "XBA", 956: "XBB", 957: "XBC", 958: "XBD", 959: "XAU",
    960: "XDR", 961: "XAG", 962: "XPT", 963: "XTS", 964: "XPD", 965: "XUA", 967: "ZMW", 968: "SRD",
    969: "MGA", 970: "COU", 971: "AFN", 972: "TJS", 973: "AOA", 976: "CDF", 977: "BAM", 978: "EUR",
    979: "MXV", 980: "UAH", 981: "GEL", 984: "BOV", 985: "PLN", 986: "BRL", 990: "CLF", 994: "XSU",
    997: "USN", 999: "XXX",}


_PY_TYPES = {INT: "int", NUMBER: "float", STRING: "str", BOOL: "bool"}


def python_type(out: Out) -> str:
    """What a key of the normalised event holds, as a Python type: a made value's own, else
    its source Field's (a name for an enum or a currency; None unless the Field is required)."""
    if out.made:
        return out.made
    key, _, sub = out.source.partition(".")
    fields = {f.key: f for f in HEADER + COMMON}
    field = fields[key]
    if sub:
        field = {f.key: f for f in field.fields}[sub]
    kind = "str" if out.how != AS_IS else _PY_TYPES[field.type]
    return kind if field.required else f"{kind} | None"


def valid_action_name(name: str) -> bool:
    """`context.activity`: 1-32 of [a-zA-Z0-9.-_], with a `.` that is neither first nor last."""
    return (
        0 < len(name) <= MAX_ACTION_NAME
        and "." in name[1:-1]
        and all(ch in ACTION_NAME_CHARS for ch in name)
    )
