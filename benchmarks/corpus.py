"""A realistic corpus of SDK batches: mostly screen views and taps, some gestures, transactions,
variables and custom events with unicode params. Deterministic for a given seed.

    python -m benchmarks.corpus --batches 1000 --out corpus.jsonl
"""

import argparse
import json
import random

SCREENS = ["Home", "Product", "Cart", "Checkout", "Profile", "Search", "Live", "Kampanje", "Café",
           "Résumé", "Einstellungen", "Поиск", "ホーム", "Sponsor 🎉"]
VIEWS = ["btn_ok", "btn_buy", "tab_home", "card_product", "btn_vote", "menu", "img_banner"]
CUSTOM = [
    ("poll.voted", lambda r: {"pollId": f"poll_{r.randint(1, 99)}", "questionText": "Hvem scorer først?",
                              "optionSelected": r.choice(["Mbappé", "Haaland", "Ødegaard", "Müller"]),
                              "optionIndex": r.randint(0, 3)}),
    ("checkout.completed", lambda r: {"orderId": f"o{r.randint(1, 10**6)}", "total": round(r.uniform(5, 500), 2),
                                      "items": [{"sku": f"s{r.randint(1, 999)}", "qty": r.randint(1, 3)}
                                                for _ in range(r.randint(1, 3))], "currency": "NOK"}),
    ("sponsor_moment.tapped", lambda r: {"sponsorId": r.randint(1, 50), "moment": "Målsjanse! ⚽",
                                         "visible": r.random() < 0.5}),
    ("product.viewed", lambda r: {"productId": f"p{r.randint(1, 5000)}", "price": r.randint(10, 2000),
                                  "tags": ["sale", "nouveauté"]}),
    ("cart.item_added", lambda r: {"productId": f"p{r.randint(1, 5000)}", "qty": r.randint(1, 5)}),
    ("broadcast.joined", lambda r: {"broadcastId": "real-madrid-vs-mancity-2026-03-11", "campaignId": 35}),
]


def _event(r: random.Random, i: int, batch: int, now: int) -> dict:
    t = now - r.randint(10, 60_000)
    url_title = r.choice(SCREENS)
    ev = {
        "upt": r.randint(100, 10**7),
        "euid": f"{batch:06d}-{i:03d}-{r.getrandbits(48):012x}",
        "url": f"app-and://shop/main?title={url_title.replace(' ', '+')}"
        if r.random() < 0.8 else f"app-ios://shop/{r.randint(1, 9)}?ref=push&title=Caf%C3%A9",
        "scn": r.randint(1, 40),
        "c": r.choice([-1, 1, 1, 1, 3, 4]),
        "ci": r.choice(["Telenor", "Telia", "ice", "Verizon"]),
        "o": r.choice([0, 0, 0, 1]),
        "vo": {"sv": "2.1", "sb": 4, "av": "5.12.0", "af": "release", "ab": 512},
        "sn": r.randint(1, 1000),
        "t": t,
    }
    p = r.random()
    if p < 0.40:
        ev.update(ea=4, st=url_title, sl=r.randint(10, 3000))
    elif p < 0.70:
        ev.update(ea=6, tvp="[root]>view#main>" + r.choice(VIEWS), tvid=r.choice(VIEWS), ur=r.random() < 0.9)
    elif p < 0.74:
        ev.update(ea=8, tvp="[root]>list>item", tvid=r.choice(VIEWS))
    elif p < 0.80:
        ev.update(ea=r.choice([9, 10]), tvp="[root]>carousel", tvid="carousel", fd=r.randint(1, 5),
                  tvd=r.randint(48, 900), tvv=r.randint(10, 3000))
    elif p < 0.84:
        ev.update(ea=16, tr={"vl": round(r.uniform(1, 999), 2), "cu": r.choice([978, 840, 578, 752, 208]),
                             "id": f"tx{r.getrandbits(40):x}"})
    elif p < 0.87:
        if r.random() < 0.5:
            ev.update(ea=18, k="theme", v=r.choice(["dark", "light", "høykontrast"]))
        else:
            ev.update(ea=19, k="level", v=r.randint(1, 100))
    elif p < 0.89:
        ev.update(ea=r.choice([0, 1, 2]))
    else:
        name, params = r.choice(CUSTOM)
        ev.update(ea=20, ac=name, lb=name.split(".")[1].replace("_", " ").title(), pr=params(r))
    return ev


def make_batch(r: random.Random, batch: int, events: int) -> bytes:
    now = 1_765_000_000_000 + batch * 1000
    doc = {
        "pid": r.choice([8, 8, 8, 12, 35]),
        "uid": f"{r.getrandbits(128):032x}",
        "dt": r.choice([4, 4, 5]),
        "dma": r.choice(["Samsung", "Google", "Apple", "Xiaomi"]),
        "dmo": r.choice(["SM-G991B", "Pixel 8", "iPhone15,2", "23049PCD8G"]),
        "os": r.choice(["14", "13", "17.4"]),
        "l": r.choice(["nb_NO", "en_US", "fr_FR", "de_DE"]),
        "tz": r.choice(["Europe/Oslo", "Europe/Paris", "America/New_York"]),
        "now": now,
        "to": {"an": "Vio Live", "st": r.choice(["SDK-android", "SDK-ios"]), "sf": "release"},
        "r": {"d": r.choice([1.5, 2.0, 2.625, 3.0])},
        "pl": [_event(r, i, batch, now) for i in range(events)],
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def make_batches(n_batches: int, events_per_batch: int = 50, seed: int = 1) -> list[bytes]:
    r = random.Random(seed)
    return [make_batch(r, b, events_per_batch) for b in range(n_batches)]


def to_protobuf(batches: list[bytes]) -> list[bytes]:
    from collector import json_to_protobuf

    return [json_to_protobuf(b) for b in batches]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=1000)
    p.add_argument("--events", type=int, default=50, help="events per batch")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="-")
    args = p.parse_args()
    data = b"".join(b + b"\n" for b in make_batches(args.batches, args.events, args.seed))
    if args.out == "-":
        import sys

        sys.stdout.buffer.write(data)
    else:
        with open(args.out, "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
