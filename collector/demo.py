"""`collector demo`: a generated live show streamed into a collector in real time, as the apps'
SDKs would send it, so that the dashboard has a show to follow (and moves) without an app.

Two broadcasts, a few hundred viewers joining and leaving, polls opening and closing, sponsor
moments, shoppers ending with orders in NOK and EUR: the product's event taxonomy (ANALYTICS.md
section 1) as compact JSON batches of custom events (SPEC section 1, `ea` 20), one user's events
per batch, at most 50, sent about once a second through the gateway client.

The same seed gives the same show: who watches which broadcast, what they do and when in the
show, what they vote and buy. Event and order ids also carry the start time, so a second run is
a second show, never taken for duplicates of the first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
import time
import uuid
from typing import NamedTuple

import grpc

from .client import Client

# (broadcastId, campaignId), and the share of the audience each gets
BROADCASTS = (("demo-rosenborg-vs-molde", "35"), ("demo-brann-vs-bodo-glimt", "36"))
AUDIENCE = (0.6, 0.4)
# (pollId, question, options, how the votes lean), opening at these fractions of the show
POLLS = (
    ("poll_1", "Hvem scorer først?", ("Ødegaard", "Haaland", "Sørloth", "Berge"), (3, 5, 2, 1)),
    ("poll_2", "Blir det straffe?", ("Ja", "Nei"), (2, 3)),
    ("poll_3", "Kampens spiller?", ("Ødegaard", "Haaland", "Nyland"), (4, 4, 1)),
)
POLL_AT = (0.2, 0.45, 0.7)
SPONSORS = ("11", "12", "13")
SPONSOR_AT = (0.1, 0.3, 0.5, 0.65, 0.85)
# sku -> price in NOK and in EUR
PRODUCTS = {"jersey-home": (899, 79), "jersey-away": (899, 79), "scarf": (249, 22),
            "cap": (299, 27), "match-ticket": (450, 40)}
# (locale, time zone, weight); Norwegian viewers pay in NOK, the others in EUR
LOCALES = (("nb_NO", "Europe/Oslo", 55), ("sv_SE", "Europe/Stockholm", 10),
           ("en_GB", "Europe/London", 15), ("de_DE", "Europe/Berlin", 12),
           ("en_US", "America/New_York", 8))
AMBIENT = ("lineup.viewed", "contest.viewed", "product.viewed", "poll.viewed")
BATCH_EVENTS = 50  # SDKs send at most this many events per batch
FLUSH_SECONDS = 1.0  # and flush about this often


class Planned(NamedTuple):
    at: int  # ms into the show
    user: int
    action: str
    params: dict


class Viewer(NamedTuple):
    uid: str
    locale: str
    tz: str
    platform: str  # SDK-ios or SDK-android
    device: int  # 4 phone, 5 tablet
    session: int


def viewers(rng: random.Random, count: int) -> list[Viewer]:
    out = []
    for _ in range(count):
        locale, tz, _w = rng.choices(LOCALES, weights=[w for *_, w in LOCALES])[0]
        out.append(Viewer(str(uuid.UUID(int=rng.getrandbits(128))), locale, tz,
                          rng.choice(("SDK-ios", "SDK-android")), 5 if rng.random() < 0.12 else 4,
                          rng.randrange(1, 1 << 30)))
    return out


def plan(seed: int, users: int, minutes: float) -> tuple[list[Viewer], list[Planned]]:
    """The show: its viewers and every event, in show time order (a pure function of its
    arguments)."""
    rng = random.Random(seed)
    people = viewers(rng, users)
    length = int(minutes * 60_000)
    poll_open = max(30_000, min(180_000, length // 8))
    events: list[Planned] = []
    orders = 0

    def add(at, user, action, broadcast, **params):
        bid, campaign = BROADCASTS[broadcast]
        events.append(Planned(min(int(at), length), user, action,
                              {"broadcastId": bid, "campaignId": campaign, **params}))

    def shop(at, user, broadcast, sponsor):
        """Looking at a product, perhaps buying it: the funnel, ending in an order or not."""
        nonlocal orders
        sku = rng.choice(list(PRODUCTS))
        extra = {"sponsorId": sponsor} if sponsor else {}
        add(at, user, "product.viewed", broadcast, productId=sku, **extra)
        if rng.random() < 0.45:
            add(at + 4_000, user, "product.tapped", broadcast, productId=sku, **extra)
        if rng.random() > 0.6:
            return
        at += rng.randint(10_000, 40_000)
        qty = rng.choice((1, 1, 1, 2, 3))
        add(at, user, "cart.item_added", broadcast, productId=sku, qty=qty, **extra)
        if rng.random() > 0.75:
            add(at + 20_000, user, "cart.item_removed", broadcast, productId=sku, **extra)
            return
        items = [{"sku": sku, "qty": qty}]
        if rng.random() < 0.3:
            items.append({"sku": rng.choice(list(PRODUCTS)), "qty": 1})
        at += rng.randint(15_000, 60_000)
        add(at, user, "checkout.started", broadcast, **extra)
        nok = people[user].locale == "nb_NO"
        currency = "NOK" if nok else "EUR"
        total = round(sum(PRODUCTS[i["sku"]][0 if nok else 1] * i["qty"] for i in items), 2)
        orders += 1
        order = {"orderId": f"order-{orders:05d}", "items": items, "total": total, "currency": currency}
        if rng.random() < 0.8:
            add(at + rng.randint(20_000, 90_000), user, "checkout.completed", broadcast, **order, **extra)
        else:
            add(at + rng.randint(60_000, 180_000), user, "checkout.abandoned", broadcast, **order, **extra)

    for user in range(users):
        broadcast = 0 if rng.random() < AUDIENCE[0] else 1
        join = min(rng.expovariate(1 / (0.12 * length)), 0.8 * length)
        sessions = []
        leave = length if rng.random() < 0.55 else rng.uniform(join + 0.1 * length, length)
        sessions.append((join, leave))
        if leave < 0.8 * length and rng.random() < 0.35:  # back after a break
            back = rng.uniform(leave + 0.02 * length, 0.9 * length)
            sessions.append((back, length))
        for start, end in sessions:
            add(start, user, "broadcast.joined", broadcast)
            at = start + rng.uniform(5_000, 60_000)
            while at < end:  # what a viewer does between the show's moments
                action = rng.choice(AMBIENT)
                if action == "product.viewed":
                    if rng.random() < 0.25:
                        shop(at, user, broadcast, None)
                    else:
                        add(at, user, action, broadcast, productId=rng.choice(list(PRODUCTS)))
                elif action == "contest.viewed":
                    add(at, user, action, broadcast, contestId="c-1")
                    if rng.random() < 0.3:
                        add(at + 8_000, user, "contest.entered", broadcast, contestId="c-1")
                else:
                    add(at, user, action, broadcast)
                at += rng.uniform(60_000, 240_000)
            for k, (poll, question, options, lean) in enumerate(POLLS):
                opens = POLL_AT[k] * length
                if not start <= opens < end:
                    continue
                add(opens + rng.uniform(0, 15_000), user, "poll.viewed", broadcast, pollId=poll)
                votes = 1 + (rng.random() < 0.06)  # a few change their mind
                if rng.random() < 0.7:
                    for _ in range(votes):
                        index = rng.choices(range(len(options)), weights=lean)[0]
                        add(opens + rng.uniform(5_000, poll_open), user, "poll.voted", broadcast,
                            pollId=poll, questionText=question, optionSelected=options[index],
                            optionIndex=index)
            for k, moment in enumerate(SPONSOR_AT):
                at = moment * length
                if not start <= at < end:
                    continue
                sponsor = SPONSORS[k % len(SPONSORS)]
                add(at + rng.uniform(0, 10_000), user, "sponsor_moment.viewed", broadcast, sponsorId=sponsor)
                if rng.random() < 0.22:
                    add(at + rng.uniform(10_000, 25_000), user, "sponsor_moment.tapped", broadcast,
                        sponsorId=sponsor)
                    shop(at + 30_000, user, broadcast, sponsor)
            add(end, user, "broadcast.left", broadcast)
    events.sort(key=lambda e: e.at)
    return people, events


def batches(people: list[Viewer], due: list[Planned], *, project: int, start_ms: int,
            speed: float, seed: int, first: int, now_ms: int) -> list[bytes]:
    """The compact JSON batches the viewers' SDKs send for these events: per user, at most 50
    events each. `first` numbers the events, for their ids."""
    by_user: dict[int, list] = {}
    for n, e in enumerate(due, first):
        digest = hashlib.blake2b(f"{seed}:{start_ms}:{n}".encode(), digest_size=16).digest()
        params = dict(e.params)
        if "orderId" in params:
            params["orderId"] = f"{params['orderId']}-{start_ms:x}"
        by_user.setdefault(e.user, []).append({
            "euid": str(uuid.UUID(bytes=digest)), "ea": 20, "t": start_ms + int(e.at / speed),
            "sn": people[e.user].session, "c": 1, "o": 0, "ac": e.action, "pr": params,
        })
    out = []
    for user, events in by_user.items():
        v = people[user]
        for i in range(0, len(events), BATCH_EVENTS):
            out.append(json.dumps({
                "pid": project, "uid": v.uid, "now": now_ms, "dt": v.device, "os": "18.1",
                "l": v.locale, "tz": v.tz, "to": {"an": "Live Demo", "st": v.platform, "sf": "release"},
                "pl": events[i:i + BATCH_EVENTS],
            }, ensure_ascii=False, separators=(",", ":")).encode())
    return out


async def stream(address: str, *, seed: int = 1, users: int = 300, speed: float = 1.0,
                 minutes: float = 30.0, project: int = 1, api_key: str | None = None,
                 on_reply=None, start_ms: int | None = None) -> dict:
    """Stream the show into the collector at `address` as it happens (`speed` times faster);
    the counts of what the collector answered."""
    people, events = plan(seed, users, minutes)
    start_ms = time.time_ns() // 1_000_000 if start_ms is None else start_ms
    totals = {"events": 0, "batches": 0, "accepted": 0, "duplicate": 0, "filtered": 0,
              "rejected": 0, "refused": 0}

    async def requests():
        i = n = 0
        while i < len(events):
            now = time.time_ns() // 1_000_000
            show_ms = (now - start_ms) * speed
            due = []
            while i < len(events) and events[i].at <= show_ms:
                due.append(events[i])
                i += 1
            for batch in batches(people, due, project=project, start_ms=start_ms, speed=speed,
                                 seed=seed, first=totals["events"], now_ms=now):
                n += 1
                yield Client.request(batch, batch_id=f"demo:{seed}:{start_ms}:{n}")
            totals["events"] += len(due)
            if i < len(events):
                wait = (events[i].at - show_ms) / speed / 1000
                await asyncio.sleep(max(FLUSH_SECONDS, wait))

    async with Client(address, api_key=api_key) as client:
        try:
            await asyncio.wait_for(client.channel.channel_ready(), 10)
        except TimeoutError:
            raise ConnectionError(f"nothing answers at {address}: is `collector serve` running?") from None
        async for reply in client.stream(requests()):
            totals["batches"] += 1
            if reply.batch_error or reply.status:
                totals["refused"] += 1
            for key in ("accepted", "duplicate", "filtered", "rejected"):
                totals[key] += getattr(reply, key)
            if on_reply is not None:
                on_reply(reply, totals)
    return totals


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:.3g} s"


def main(args, progress) -> int:
    """The `collector demo` command."""
    host = args.address.rsplit(":", 1)[0] or "127.0.0.1"
    length = f"{args.minutes:g}-minute"
    print(f"demo: a {length} live show on 2 broadcasts with {args.users} viewers (seed {args.seed}), "
          f"streamed to {args.address} as project {args.project} in {_duration(args.minutes * 60 / args.speed)} "
          f"(speed {args.speed:g}).")
    print(f"demo: open the dashboard at http://{host}:8080/?projectId={args.project} (the "
          "collector's http_listen) and follow it live.", flush=True)
    problems: list[str] = []

    def on_reply(reply, totals):
        if (reply.batch_error or reply.status or reply.rejected) and len(problems) < 3:
            problems.append(reply.detail or reply.batch_error or
                            ", ".join(f"{r.code} {r.detail}".strip() for r in reply.results))
            progress.clear()
            print(f"demo: the collector refused events: {problems[-1]}", file=sys.stderr)
        progress.update(f"{totals['events']:,} events, {totals['accepted']:,} accepted")

    try:
        totals = asyncio.run(stream(args.address, seed=args.seed, users=args.users,
                                    speed=args.speed, minutes=args.minutes, project=args.project,
                                    api_key=args.api_key, on_reply=on_reply))
    except KeyboardInterrupt:
        progress.clear()
        print("demo: stopped.")
        return 0
    except (ConnectionError, OSError) as exc:
        progress.clear()
        print(f"collector demo: {exc}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as exc:
        progress.clear()
        print(f"collector demo: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    progress.done()
    print(f"demo: sent {totals['events']:,} events in {totals['batches']:,} batches: "
          f"{totals['accepted']:,} accepted, {totals['duplicate']:,} duplicate, "
          f"{totals['rejected']:,} rejected, {totals['refused']:,} batches refused.")
    return 0 if not totals["rejected"] and not totals["refused"] else 1
