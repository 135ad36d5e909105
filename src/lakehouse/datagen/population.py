"""Entities shared by several sources: the customers, the product catalog and the merchants.

They come from their own seeded streams, so the orders, web events, tickets and payments all refer
to the same customers and products whichever sources a caller asks for.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date

import numpy as np

from . import _reference as ref
from ._common import day_number, stream
from .scales import Scale

BATCH1_AS_OF = date(2026, 6, 15)  # CRM batch 001 is an extract as of this day; batch 002 follows
ORPHAN_CUSTOMER_BASE = 900_000  # ids above every real customer's at every scale
ORPHAN_PRODUCT_BASE = 90_000


def ascii_fold(text: str) -> str:
    """'Müller' -> 'muller', "O'Brien" -> 'obrien': the part of a name usable in an email."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalpha())


def fill_patterns(patterns: list[str], rng: np.random.Generator) -> list[str]:
    """Fill postal-code patterns: '#' becomes a digit, '@' an uppercase letter."""
    width = max((len(p) for p in patterns), default=0)
    digits = rng.integers(0, 10, size=(len(patterns), width)).tolist()
    letters = rng.integers(65, 91, size=(len(patterns), width)).tolist()
    out = []
    for pattern, ds, ls in zip(patterns, digits, letters):
        chars = []
        for j, ch in enumerate(pattern):
            if ch == "#":
                chars.append(str(ds[j]))
            elif ch == "@":
                chars.append(chr(ls[j]))
            else:
                chars.append(ch)
        out.append("".join(chars))
    return out


def weights(values) -> np.ndarray:
    w = np.asarray(values, dtype="float64")
    return w / w.sum()


RESIDENT_LOCATIONS = np.array([i for i, loc in enumerate(ref.LOCATIONS) if loc.resident_weight])
RESIDENT_P = weights([ref.LOCATIONS[i].resident_weight for i in RESIDENT_LOCATIONS])
LOCATION_COUNTRY = [loc.country for loc in ref.LOCATIONS]
LOCATION_CURRENCY = [ref.COUNTRIES[loc.country][0] for loc in ref.LOCATIONS]


def format_phones(location: np.ndarray, rng: np.random.Generator) -> list[str]:
    a = rng.integers(200, 1000, size=location.size).tolist()
    b = rng.integers(0, 1000, size=location.size).tolist()
    c = rng.integers(0, 10_000, size=location.size).tolist()
    out = []
    for loc, x, y, z in zip(location.tolist(), a, b, c):
        prefix = ref.COUNTRIES[LOCATION_COUNTRY[loc]][1]
        if prefix == "+1":
            x = 555  # the fictional exchange
        out.append(f"{prefix} {x:03d} {y:03d} {z:04d}")
    return out


@dataclass
class Customers:
    """Every customer, batch 001 and new ones; index i is customer ``C{i+1:06d}``."""

    n_existing: int
    ids: list[str]
    first_name: list[str]
    last_name: list[str]
    email: list[str]
    phone: list[str]
    dob_day: np.ndarray
    street: list[str]
    postal_code: list[str]
    location: np.ndarray
    segment: np.ndarray
    signup_day: np.ndarray
    opt_in: np.ndarray
    activity: np.ndarray  # relative purchase / browse / payment frequency
    card_network: np.ndarray
    card_last4: list[str]
    device: list[str]

    @property
    def size(self) -> int:
        return len(self.ids)


def build_customers(seed: int, scale: Scale) -> Customers:
    rng = stream(seed, "population", "customers")
    n_old, n = scale.customers, scale.customers + scale.new_customers
    first_idx = rng.integers(len(ref.FIRST_NAMES), size=n).tolist()
    last_idx = rng.integers(len(ref.LAST_NAMES), size=n).tolist()
    first = [ref.FIRST_NAMES[i] for i in first_idx]
    last = [ref.LAST_NAMES[i] for i in last_idx]
    domains = rng.integers(len(ref.EMAIL_DOMAINS), size=n).tolist()
    email = [
        f"{ascii_fold(f)}.{ascii_fold(s)}{i + 1}@{ref.EMAIL_DOMAINS[d]}"
        for i, (f, s, d) in enumerate(zip(first, last, domains))
    ]
    location = rng.choice(RESIDENT_LOCATIONS, size=n, p=RESIDENT_P)
    numbers = rng.integers(1, 3000, size=n).tolist()
    names = rng.integers(len(ref.STREET_NAMES), size=n).tolist()
    suffixes = rng.integers(len(ref.STREET_SUFFIXES), size=n).tolist()
    street = [
        f"{num} {ref.STREET_NAMES[a]} {ref.STREET_SUFFIXES[b]}"
        for num, a, b in zip(numbers, names, suffixes)
    ]
    signup = np.concatenate(
        [
            rng.integers(day_number(date(2019, 1, 1)), day_number(BATCH1_AS_OF), size=n_old),
            rng.integers(
                day_number(BATCH1_AS_OF) + 1, day_number(date(2026, 6, 30)) + 1, size=n - n_old
            ),
        ]
    )
    return Customers(
        n_existing=n_old,
        ids=[f"C{i:06d}" for i in range(1, n + 1)],
        first_name=first,
        last_name=last,
        email=email,
        phone=format_phones(location, rng),
        dob_day=rng.integers(day_number(date(1940, 1, 1)), day_number(date(2008, 1, 1)), size=n),
        street=street,
        postal_code=fill_patterns([ref.LOCATIONS[i].postal_pattern for i in location], rng),
        location=location,
        segment=rng.choice(len(ref.SEGMENTS), size=n, p=weights(ref.SEGMENT_WEIGHTS)),
        signup_day=signup,
        opt_in=rng.random(n) < 0.55,
        activity=rng.integers(1, 6, size=n).astype("float64") ** 2,
        card_network=rng.choice(
            len(ref.CARD_NETWORKS), size=n, p=weights(ref.CARD_NETWORK_WEIGHTS)
        ),
        card_last4=[f"{x:04d}" for x in rng.integers(0, 10_000, size=n).tolist()],
        device=[f"{x:016x}" for x in rng.integers(0, 2**63 - 1, size=n, dtype="int64").tolist()],
    )


@dataclass
class Catalog:
    ids: list[str]
    name: list[str]
    category: list[str]
    subcategory: list[str]
    brand: list[str]
    price_cents: np.ndarray  # in US cents
    cost_cents: np.ndarray
    is_active: np.ndarray
    popularity: np.ndarray

    @property
    def size(self) -> int:
        return len(self.ids)


SUBCATEGORIES = [(cat, sub) for cat, subs in ref.CATEGORIES.items() for sub in subs]


def build_catalog(seed: int, scale: Scale) -> Catalog:
    rng = stream(seed, "population", "catalog")
    n = scale.products
    sub_idx = rng.integers(len(SUBCATEGORIES), size=n).tolist()
    brand_idx = rng.integers(len(ref.BRANDS), size=n).tolist()
    adj_idx = rng.integers(len(ref.ADJECTIVES), size=n).tolist()
    noun_u = rng.random(n).tolist()
    pack = rng.integers(0, 10 * len(ref.PACK_SUFFIXES), size=n).tolist()
    price_u = rng.random(n)
    names, cats, subs, brands, prices = [], [], [], [], []
    for i in range(n):
        cat, sub = SUBCATEGORIES[sub_idx[i]]
        nouns = ref.CATEGORIES[cat][sub]
        noun, lo, hi = nouns[int(noun_u[i] * len(nouns))]
        suffix = ref.PACK_SUFFIXES[pack[i]] if pack[i] < len(ref.PACK_SUFFIXES) else ""
        brand = ref.BRANDS[brand_idx[i]]
        names.append(f"{brand} {ref.ADJECTIVES[adj_idx[i]]} {noun}{suffix}")
        cats.append(cat)
        subs.append(sub)
        brands.append(brand)
        # skewed toward the cheap end; prices end in .99 like a shop's
        raw = lo + (hi - lo) * price_u[i] * price_u[i]
        prices.append(max(lo, int(raw // 100) * 100 + 99))
    price = np.array(prices, dtype="int64")
    return Catalog(
        ids=[f"P{i:05d}" for i in range(1, n + 1)],
        name=names,
        category=cats,
        subcategory=subs,
        brand=brands,
        price_cents=price,
        cost_cents=price * rng.integers(35, 76, size=n) // 100,
        is_active=rng.random(n) < 0.92,
        popularity=rng.integers(1, 11, size=n).astype("float64") ** 2,
    )


@dataclass
class Merchants:
    ids: list[str]
    category: list[str]
    channel: list[str]
    location: np.ndarray
    # per channel: merchant indices sorted by location, and where each location's run starts
    by_channel: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]

    def pick(self, channel: str, location: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One merchant of ``channel`` in each given location (online: any location)."""
        members, starts, counts = self.by_channel[channel]
        if channel == "online":
            return members[rng.integers(members.size, size=location.size)]
        offset = np.floor(rng.random(location.size) * counts[location]).astype("int64")
        return members[starts[location] + offset]


def build_merchants(seed: int, scale: Scale) -> Merchants:
    rng = stream(seed, "population", "merchants")
    n_loc = len(ref.LOCATIONS)
    n_atm = max(n_loc, scale.merchants // 10)
    n_online = max(10, scale.merchants // 4)
    n_pos = max(n_loc, scale.merchants - n_atm - n_online)
    visit_p = weights([loc.resident_weight or 1 for loc in ref.LOCATIONS])

    def placed(count: int) -> np.ndarray:
        # every location gets at least one, so a card-present payment always finds a merchant
        extra = rng.choice(n_loc, size=count - n_loc, p=visit_p)
        return np.concatenate([np.arange(n_loc), extra])

    pos_cats = [c for c, (ch, _, _) in ref.MERCHANT_CATEGORIES.items() if ch == "pos"]
    online_cats = [c for c, (ch, _, _) in ref.MERCHANT_CATEGORIES.items() if ch == "online"]
    category = (
        [pos_cats[i] for i in rng.integers(len(pos_cats), size=n_pos).tolist()]
        + ["atm"] * n_atm
        + [online_cats[i] for i in rng.integers(len(online_cats), size=n_online).tolist()]
    )
    channel = ["pos"] * n_pos + ["atm"] * n_atm + ["online"] * n_online
    location = np.concatenate(
        [placed(n_pos), placed(n_atm), rng.choice(n_loc, size=n_online, p=visit_p)]
    )
    by_channel = {}
    channels = np.array(channel)
    for ch in ("pos", "atm", "online"):
        members = np.flatnonzero(channels == ch)
        members = members[np.argsort(location[members], kind="stable")]
        counts = np.bincount(location[members], minlength=n_loc)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        by_channel[ch] = (members, starts, counts)
    return Merchants(
        ids=[f"M{i:06d}" for i in range(1, len(category) + 1)],
        category=category,
        channel=channel,
        location=location,
        by_channel=by_channel,
    )
