"""A realistic corpus of SDK batches: mostly screen views and taps, some gestures, transactions,
variables and custom events with unicode params. Deterministic for a given seed, so that runs on
different days and machines measure the same bytes.

    python -m benchmarks.corpus --batches 1000 [--order shuffled] --out corpus.jsonl
"""

import argparse
import json
import random
import sys
from urllib.parse import quote

SCREENS = ["Home", "Product", "Cart", "Checkout", "Profile", "Search", "Live", "Kampanje", "Café",
           "Résumé", "Einstellungen", "Поиск", "ホーム", "Sponsor 🎉", "Min side", "Pålogging"]
VIEWS = ["btn_ok", "btn_buy", "tab_home", "card_product", "btn_vote", "menu", "img_banner"]
CURRENCIES = [978, 978, 840, 840, 578, 578, 752, 208, 826, 756, 392]  # EUR USD NOK SEK DKK GBP CHF JPY
CUSTOM = [
    ("poll.voted", lambda r: {
        "pollId": f"poll_{r.randint(1, 99)}", "questionText": "Hvem scorer først?",
        "optionSelected": r.choice(["Mbappé", "Haaland", "Ødegaard", "Müller"]),
        "optionIndex": r.randint(0, 3), "anonymous": r.random() < 0.3}),
    ("checkout.completed", lambda r: {
        "orderId": f"o{r.randint(1, 10**6)}", "total": round(r.uniform(5, 500), 2), "currency": "NOK",
        "items": [{"sku": f"s{r.randint(1, 999)}", "qty": r.randint(1, 3), "price": round(r.uniform(1, 99), 2)}
                  for _ in range(r.randint(1, 3))],
        "shipping": {"method": r.choice(["PostNord", "Helthjem", "Colissimo"]),
                     "address": {"city": r.choice(["Tromsø", "Bærum", "Besançon"]), "zip": "9008"}},
        "coupon": None}),
    ("sponsor_moment.tapped", lambda r: {
        "sponsorId": r.randint(1, 50), "moment": "Målsjanse! ⚽", "visible": r.random() < 0.5,
        "position": [round(r.random(), 3), round(r.random(), 3)]}),
    ("product.viewed", lambda r: {
        "productId": f"p{r.randint(1, 5000)}", "price": r.randint(10, 2000),
        "tags": ["soldes", "nouveauté", "été ☀️"], "rating": round(r.uniform(1, 5), 1)}),
    ("cart.item_added", lambda r: {"productId": f"p{r.randint(1, 5000)}", "qty": r.randint(1, 5),
                                   "note": "Gave til bestemor 🎁"}),
    ("broadcast.joined", lambda r: {"broadcastId": "real-madrid-vs-mancity-2026-03-11",
                                    "campaignId": 35, "secondScreen": True}),
]


def _url(r: random.Random, title: str, ios: bool) -> str:
    """The screen url as each SDK builds it: Android writes the title as is (`+` for spaces), iOS
    percent-encodes it; now and then a push deep link with a fragment."""
    if not ios:
        return f"app-and://shop/main?title={title.replace(' ', '+')}"
    if r.random() < 0.2:
        return f"app-ios://shop/{r.randint(1, 9)}?ref=push&title={quote(title)}#top"
    return f"app-ios://shop/main?title={quote(title)}"


def _payload(r: random.Random, title: str) -> dict:
    """`ea` and the keys of its action, in the mix of a typical app."""
    p = r.random()
    if p < 0.40:
        return {"ea": 4, "st": title, "sl": r.randint(10, 3000)}
    if p < 0.70:
        view = r.choice(VIEWS)
        return {"ea": 6, "tvp": f"[root]>view#main>{view}", "tvid": view, "ur": r.random() < 0.9}
    if p < 0.74:
        return {"ea": 8, "tvp": "[root]>list>item", "tvid": r.choice(VIEWS)}
    if p < 0.80:
        return {"ea": r.choice([9, 10]), "tvp": "[root]>carousel", "tvid": "carousel",
                "fd": r.randint(1, 5), "tvd": r.randint(48, 900), "tvv": r.randint(10, 3000)}
    if p < 0.84:
        return {"ea": 16, "tr": {"vl": round(r.uniform(1, 999), 2), "cu": r.choice(CURRENCIES),
                                 "id": f"tx{r.getrandbits(40):x}"}}
    if p < 0.87:
        if r.random() < 0.5:
            return {"ea": 18, "k": "theme", "v": r.choice(["dark", "light", "høykontrast"])}
        return {"ea": 19, "k": "level", "v": r.randint(1, 100)}
    if p < 0.89:
        return {"ea": r.choice([0, 1, 2])}
    name, params = r.choice(CUSTOM)
    return {"ea": 20, "ac": name, "lb": name.split(".")[1].replace("_", " ").capitalize(), "pr": params(r)}


def _event(r: random.Random, i: int, batch: int, now: int, ios: bool) -> dict:
    title = r.choice(SCREENS)
    payload = _payload(r, title)
    return {
        "euid": f"{batch:06d}-{i:03d}-{r.getrandbits(48):012x}",
        "ea": payload.pop("ea"),
        "t": now - r.randint(10, 60_000),
        "upt": r.randint(100, 10**7),
        "url": _url(r, title, ios),
        "scn": r.randint(1, 40),
        "c": r.choice([-1, 1, 1, 1, 3, 4]),
        "ci": r.choice(["Telenor", "Telia", "ice", "Verizon", "Orange"]),
        "o": r.choice([0, 0, 0, 1]),
        "vo": {"sv": "2.1", "sb": 4, "av": "5.12.0", "af": "release", "ab": 512},
        "sn": r.randint(1, 1000),
        **payload,
    }


def make_batch(r: random.Random, batch: int, events: int) -> bytes:
    now = 1_765_000_000_000 + batch * 1000
    ios = r.random() < 0.4
    doc = {
        "pid": r.choice([8, 8, 8, 12, 35]),
        "uid": f"{r.getrandbits(128):032x}",
        "dt": r.choice([4, 4, 5]),
        "dma": "Apple" if ios else r.choice(["Samsung", "Google", "Xiaomi"]),
        "dmo": r.choice(["iPhone15,2", "iPad13,4"] if ios else ["SM-G991B", "Pixel 8", "23049PCD8G"]),
        "os": r.choice(["17.4", "18.1"] if ios else ["13", "14"]),
        "l": r.choice(["nb_NO", "en_US", "fr_FR", "de_DE"]),
        "tz": r.choice(["Europe/Oslo", "Europe/Paris", "America/New_York"]),
        "now": now,
        "to": {"an": "Vio Live", "st": "SDK-ios" if ios else "SDK-android", "sf": "release"},
        "r": {"d": r.choice([1.5, 2.0, 2.625, 3.0])},
        "pl": [_event(r, i, batch, now, ios) for i in range(events)],
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def make_batches(n_batches: int, events_per_batch: int = 50, seed: int = 1) -> list[bytes]:
    """JSON batches that decode without a single rejection: a benchmark must time the happy path
    it claims to, not error handling."""
    from collector import _pure

    r = random.Random(seed)
    batches = [make_batch(r, b, events_per_batch) for b in range(n_batches)]
    for i, b in enumerate(batches):
        decoded = _pure.decode(b, "json", 1_765_000_000_000)
        assert not decoded.rejected and len(decoded) == events_per_batch, (i, decoded.rejected)
    return batches


# Key orders that writers use: JSON objects are unordered. Go re-encodes a map with its keys
# sorted (`pl` then comes before `r`, `to`, `tz`, `uid`); Swift's JSONEncoder gives a
# dictionary's keys in no fixed order.
ORDERS = ("header first", "pl first", "header around pl", "alphabetical", "shuffled")


def _sorted(value):
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _shuffled(value, r: random.Random):
    if isinstance(value, dict):
        keys = list(value)
        r.shuffle(keys)
        return {k: _shuffled(value[k], r) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, r) for v in value]
    return value


def reorder(batches: list[bytes], order: str, seed: int = 1) -> list[bytes]:
    """The same batches with their keys in another order (the same events, the same bytes
    but for where each key is): "pl first", the header "around pl" (half its keys before,
    half after), "alphabetical" or "shuffled" at every level, params included."""
    r = random.Random(seed)
    out = []
    for b in batches:
        doc = json.loads(b)
        head = [k for k in doc if k != "pl"]
        if order == "header first":
            doc = {**{k: doc[k] for k in head}, "pl": doc["pl"]}
        elif order == "pl first":
            doc = {"pl": doc["pl"], **{k: doc[k] for k in head}}
        elif order == "header around pl":
            half = len(head) // 2
            doc = {**{k: doc[k] for k in head[:half]}, "pl": doc["pl"], **{k: doc[k] for k in head[half:]}}
        elif order == "alphabetical":
            doc = _sorted(doc)
        elif order == "shuffled":
            doc = _shuffled(doc, r)
        else:
            raise ValueError(f"unknown order {order!r}: one of {', '.join(ORDERS)}")
        out.append(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())
    return out


def to_protobuf(batches: list[bytes]) -> list[bytes]:
    """The same batches as protobuf `Batch` messages."""
    from collector import json_to_protobuf

    return [json_to_protobuf(b) for b in batches]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=1000)
    p.add_argument("--events", type=int, default=50, help="events per batch")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--order", choices=ORDERS, default="header first", help="the batches' key order")
    p.add_argument("--out", default="-", help="JSON Lines file, one batch per line (- for stdout)")
    args = p.parse_args()
    batches = reorder(make_batches(args.batches, args.events, args.seed), args.order, args.seed)
    data = b"".join(b + b"\n" for b in batches)
    if args.out == "-":
        sys.stdout.buffer.write(data)
    else:
        with open(args.out, "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
