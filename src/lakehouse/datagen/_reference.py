"""Static reference data the generator samples from: places, names, products, merchants, text.

Every name, domain and phone range here is fictional or reserved for examples (example.com,
the 555 exchange), so generated data never points at a real person or company.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    city: str
    state: str
    country: str
    postal_pattern: str  # '#' -> digit, '@' -> uppercase letter
    lat: float
    lon: float
    resident_weight: int  # 0: only visited (travel and fraud), never a customer's home


LOCATIONS: tuple[Location, ...] = (
    Location("New York", "NY", "US", "100##", 40.7128, -74.0060, 8),
    Location("Los Angeles", "CA", "US", "900##", 34.0522, -118.2437, 6),
    Location("Chicago", "IL", "US", "606##", 41.8781, -87.6298, 5),
    Location("Houston", "TX", "US", "770##", 29.7604, -95.3698, 4),
    Location("Seattle", "WA", "US", "981##", 47.6062, -122.3321, 3),
    Location("Boston", "MA", "US", "021##", 42.3601, -71.0589, 3),
    Location("Austin", "TX", "US", "787##", 30.2672, -97.7431, 2),
    Location("Denver", "CO", "US", "802##", 39.7392, -104.9903, 2),
    Location("Miami", "FL", "US", "331##", 25.7617, -80.1918, 3),
    Location("Atlanta", "GA", "US", "303##", 33.7490, -84.3880, 3),
    Location("London", "England", "GB", "SW# #@@", 51.5072, -0.1276, 5),
    Location("Manchester", "England", "GB", "M# #@@", 53.4808, -2.2426, 2),
    Location("Edinburgh", "Scotland", "GB", "EH# #@@", 55.9533, -3.1883, 1),
    Location("Bristol", "England", "GB", "BS# #@@", 51.4545, -2.5879, 1),
    Location("Berlin", "Berlin", "DE", "10###", 52.5200, 13.4050, 3),
    Location("München", "Bavaria", "DE", "80###", 48.1351, 11.5820, 2),
    Location("Hamburg", "Hamburg", "DE", "20###", 53.5511, 9.9937, 1),
    Location("Paris", "Île-de-France", "FR", "750##", 48.8566, 2.3522, 3),
    Location("Lyon", "Auvergne-Rhône-Alpes", "FR", "6900#", 45.7640, 4.8357, 1),
    Location("Madrid", "Comunidad de Madrid", "ES", "280##", 40.4168, -3.7038, 2),
    Location("Barcelona", "Catalonia", "ES", "080##", 41.3874, 2.1686, 2),
    Location("Milan", "Lombardy", "IT", "201##", 45.4642, 9.1900, 2),
    Location("Rome", "Lazio", "IT", "001##", 41.9028, 12.4964, 1),
    Location("Amsterdam", "North Holland", "NL", "10## @@", 52.3676, 4.9041, 2),
    Location("Dublin", "Leinster", "IE", "D0# @###", 53.3498, -6.2603, 1),
    Location("Toronto", "ON", "CA", "M#@ #@#", 43.6532, -79.3832, 2),
    Location("Vancouver", "BC", "CA", "V#@ #@#", 49.2827, -123.1207, 1),
    Location("Tokyo", "Tokyo", "JP", "1##-####", 35.6762, 139.6503, 0),
    Location("Mexico City", "CDMX", "MX", "06###", 19.4326, -99.1332, 0),
    Location("Singapore", "Singapore", "SG", "######", 1.3521, 103.8198, 0),
)

# country -> (currency, phone prefix, sales tax or VAT in basis points)
COUNTRIES: dict[str, tuple[str, str, int]] = {
    "US": ("USD", "+1", 800),
    "GB": ("GBP", "+44", 2000),
    "DE": ("EUR", "+49", 1900),
    "FR": ("EUR", "+33", 2000),
    "ES": ("EUR", "+34", 2100),
    "IT": ("EUR", "+39", 2200),
    "NL": ("EUR", "+31", 2100),
    "IE": ("EUR", "+353", 2300),
    "CA": ("CAD", "+1", 1300),
    "JP": ("JPY", "+81", 1000),
    "MX": ("MXN", "+52", 1600),
    "SG": ("SGD", "+65", 900),
}

# Units of each currency per US dollar: fixed, so amounts are reproducible and a Gold lesson can
# convert them back with the same table.
FX_PER_USD: dict[str, float] = {
    "USD": 1.0,
    "EUR": 0.92,
    "GBP": 0.79,
    "CAD": 1.37,
    "JPY": 155.0,
    "MXN": 18.0,
    "SGD": 1.35,
}

FIRST_NAMES: tuple[str, ...] = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Oliver", "Sophia", "Elijah", "Isabella", "James",
    "Mia", "William", "Amelia", "Benjamin", "Harper", "Lucas", "Evelyn", "Henry", "Abigail",
    "Alexander", "Emily", "Daniel", "Ella", "Matthew", "Scarlett", "Samuel", "Grace", "David",
    "Chloé", "José", "Zoë", "Søren", "Léa", "Mateo", "Sofía", "Lukas", "Hannah", "Giulia",
    "Marco", "Aoife", "Seán", "Priya", "Arjun", "Wei", "Mei", "Yuki", "Hiroshi", "Fatima",
    "Omar", "Amara", "Kwame", "Ingrid", "Lars", "Anna", "Jan", "Eva", "Pieter", "Camille",
    "Hugo", "Nora",
)  # fmt: skip

LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee",
    "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Young", "King",
    "O'Brien", "Müller", "Schmidt", "Schneider", "Fischer", "Dubois", "Lefèvre", "Moreau",
    "Rossi", "Russo", "Bianchi", "Fernández", "López", "Sánchez", "de Vries", "van Dijk",
    "Jansen", "Murphy", "Kelly", "Byrne", "Nguyen", "Chen", "Wang", "Kim", "Patel", "Singh",
    "Tanaka", "Sato", "Okafor", "Mensah", "Andersson", "Nilsson", "Kowalski",
)  # fmt: skip

STREET_NAMES: tuple[str, ...] = (
    "Maple", "Oak", "Pine", "Cedar", "Elm", "Willow", "Birch", "Chestnut", "Harbor", "Park",
    "Lake", "Hill", "River", "Meadow", "Station", "Mill", "Church", "Market", "Victoria",
    "Garden", "Orchard", "Bridge", "Castle", "Forest",
)  # fmt: skip
STREET_SUFFIXES: tuple[str, ...] = ("Street", "Avenue", "Road", "Lane", "Way", "Drive", "Place")

EMAIL_DOMAINS: tuple[str, ...] = (
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
    "inbox.example.org",
)

SEGMENTS: tuple[str, ...] = ("consumer", "small_business", "corporate", "vip")
SEGMENT_WEIGHTS: tuple[float, ...] = (0.70, 0.15, 0.10, 0.05)

# Free-text notes a CRM agent might type. None of them holds an email address or a long run of
# digits, so a PII scan flags exactly the notes the generator seeded with PII.
CLEAN_NOTES: tuple[str, ...] = (
    "Prefers contact by email.",
    "Requested the spring catalog.",
    "Attended the VIP launch event.",
    "Address verified by courier.",
    "Complained about a late delivery in March.",
    "Interested in the loyalty program.",
    "Asked for invoices in paper form.",
    "Do not call before noon.",
    "Moved from a competitor last year.",
    "Returned two items, refund issued.",
)
PII_NOTES: tuple[str, ...] = (
    "Asked to be reached at {email} instead.",
    "Call back on {phone} after 5pm.",
    "Alternate contact: {phone}.",
    "Wife's address for invoices is {email}.",
)

# category -> subcategory -> ((product noun, min price, max price in US cents), ...)
CATEGORIES: dict[str, dict[str, tuple[tuple[str, int, int], ...]]] = {
    "electronics": {
        "audio": (
            ("Wireless Headphones", 4_999, 39_999),
            ("Bluetooth Speaker", 2_999, 19_999),
            ("Earbuds", 1_999, 24_999),
            ("Soundbar", 9_999, 79_999),
        ),
        "computers": (
            ("Laptop", 49_999, 249_999),
            ("Monitor", 12_999, 89_999),
            ("Mechanical Keyboard", 4_999, 19_999),
            ("Webcam", 2_999, 14_999),
        ),
        "accessories": (
            ('15" Laptop Sleeve', 1_499, 4_999),
            ("USB-C Hub", 1_999, 7_999),
            ("Phone Case", 999, 4_999),
            ("Charger", 1_499, 5_999),
        ),
    },
    "home": {
        "kitchen": (
            ("Chef Knife", 2_999, 19_999),
            ("Coffee Grinder", 2_999, 24_999),
            ("Blender", 3_999, 39_999),
            ("Cast Iron Pan", 1_999, 9_999),
        ),
        "furniture": (
            ("Desk Chair", 9_999, 89_999),
            ("Bookshelf", 4_999, 39_999),
            ("Side Table", 3_999, 24_999),
            ("Floor Lamp", 2_999, 19_999),
        ),
        "decor": (
            ("Throw Pillow", 999, 5_999),
            ("Wall Clock", 1_499, 9_999),
            ("Vase", 999, 7_999),
            ("Picture Frame", 999, 4_999),
        ),
    },
    "fashion": {
        "outerwear": (
            ("Rain Jacket", 4_999, 24_999),
            ("Wool Coat", 9_999, 39_999),
            ("Puffer Vest", 3_999, 14_999),
        ),
        "shoes": (
            ("Running Shoes", 5_999, 19_999),
            ("Leather Boots", 7_999, 29_999),
            ("Sneakers", 3_999, 14_999),
        ),
        "basics": (
            ("T-Shirt", 999, 3_999),
            ("Hoodie", 2_499, 7_999),
            ("Socks", 499, 1_999),
            ("Chinos", 2_999, 8_999),
        ),
    },
    "sports": {
        "fitness": (
            ("Yoga Mat", 1_499, 9_999),
            ("Dumbbell Set", 2_999, 29_999),
            ("Resistance Bands", 999, 3_999),
        ),
        "outdoor": (
            ("Tent", 9_999, 59_999),
            ("Hiking Backpack", 4_999, 24_999),
            ("Sleeping Bag", 3_999, 29_999),
            ("Water Bottle", 999, 4_999),
        ),
        "cycling": (
            ("Bike Helmet", 3_999, 19_999),
            ("Bike Light", 1_499, 7_999),
            ("Cycling Gloves", 1_499, 4_999),
        ),
    },
    "beauty": {
        "skincare": (
            ("Face Serum", 1_499, 8_999),
            ("Moisturizer", 999, 5_999),
            ("Sunscreen", 799, 3_499),
        ),
        "fragrance": (("Eau de Parfum", 3_999, 19_999), ("Body Mist", 1_499, 4_999)),
    },
    "grocery": {
        "coffee_tea": (
            ("Coffee Beans", 899, 3_999),
            ("Green Tea", 499, 2_499),
            ("Espresso Pods", 599, 2_999),
        ),
        "snacks": (
            ("Trail Mix", 299, 1_499),
            ("Dark Chocolate", 199, 999),
            ("Granola", 399, 1_299),
        ),
    },
}
BRANDS: tuple[str, ...] = (
    "Contoso", "Fabrikam", "Northwind", "Tailspin", "Litware", "Proseware", "Wingtip",
    "Adventure Works", "Coho", "Alpine", "Lumen & Co", "Bluefin",
)  # fmt: skip
ADJECTIVES: tuple[str, ...] = ("Pro", "Classic", "Eco", "Ultra", "Essential", "Lite", "Max", "Air")
PACK_SUFFIXES: tuple[str, ...] = (", 2-pack", ", Set of 3", ", Family Size")

# merchant category -> (payment channel, min and max amount in US cents)
MERCHANT_CATEGORIES: dict[str, tuple[str, int, int]] = {
    "grocery": ("pos", 350, 25_000),
    "restaurants": ("pos", 800, 18_000),
    "fuel": ("pos", 2_000, 12_000),
    "pharmacy": ("pos", 500, 9_000),
    "electronics_store": ("pos", 1_500, 250_000),
    "atm": ("atm", 2_000, 40_000),
    "online_retail": ("online", 500, 60_000),
    "digital_goods": ("online", 99, 6_000),
    "travel": ("online", 5_000, 180_000),
    "streaming": ("online", 499, 2_499),
}
CARD_NETWORKS: tuple[str, ...] = ("visa", "mastercard", "amex", "discover")
CARD_NETWORK_WEIGHTS: tuple[float, ...] = (0.50, 0.35, 0.10, 0.05)
DECLINE_REASONS: tuple[str, ...] = (
    "insufficient_funds",
    "do_not_honor",
    "card_expired",
    "incorrect_cvv",
    "suspected_fraud",
)

TICKET_SUBJECTS: tuple[str, ...] = (
    "Order not delivered",
    "Refund request",
    "Cannot log in to my account",
    "Card declined at checkout",
    "Change of delivery address",
    "Question about my invoice",
    "Item arrived damaged",
    "Wrong size received",
    "Unsubscribe from newsletter",
    "Promo code not working",
)
PII_SUBJECTS: tuple[str, ...] = (
    "Please call me at {phone}",
    "Send the refund confirmation to {email}",
    "Account locked, my email is {email}",
)

SEARCH_TERMS: tuple[str, ...] = (
    "headphones", "laptop", "running shoes", "coffee", "yoga mat", "tent", "jacket", "blender",
    "gift ideas", "sale", "usb c", "desk chair", "sunscreen", "backpack",
)  # fmt: skip
STATIC_PAGES: tuple[str, ...] = ("/", "/deals", "/help", "/account", "/stores")
REFERRERS: tuple[str | None, ...] = (
    None,
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://mail.example.com/newsletter",
    "https://social.example.net/",
    "https://ads.example.org/click",
)
REFERRER_WEIGHTS: tuple[float, ...] = (0.35, 0.30, 0.05, 0.10, 0.15, 0.05)
SHOP_URL = "https://shop.example.com"
