"""Small fixed vocabularies that make the data look real (names, places, products)."""
from __future__ import annotations

FIRST_NAMES = [
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Carlos", "Karen",
    "Wei", "Nancy", "Ahmed", "Lisa", "Daniel", "Betty", "Matthew", "Sandra", "Anthony", "Ashley",
    "Priya", "Kimberly", "Mark", "Emily", "Kenji", "Donna", "Paul", "Michelle", "Andrew", "Amara",
]
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Nguyen", "Hill", "Flores", "O'Brien",
]
# Cities of all three zenith regions (West Coast, East Coast, Central).
US_CITIES = [
    ("Seattle", "WA"), ("Portland", "OR"), ("San Francisco", "CA"), ("Los Angeles", "CA"), ("San Diego", "CA"),
    ("Anchorage", "AK"), ("Honolulu", "HI"), ("Spokane", "WA"), ("Sacramento", "CA"),
    ("New York", "NY"), ("Boston", "MA"), ("Philadelphia", "PA"), ("Miami", "FL"), ("Atlanta", "GA"),
    ("Washington", "DC"), ("Baltimore", "MD"), ("Richmond", "VA"), ("Charlotte", "NC"), ("Portland", "ME"),
    ("Providence", "RI"), ("Hartford", "CT"), ("Newark", "NJ"), ("Wilmington", "DE"), ("Charleston", "SC"),
    ("Manchester", "NH"), ("Chicago", "IL"), ("Houston", "TX"), ("Austin", "TX"), ("Denver", "CO"),
    ("Phoenix", "AZ"), ("Minneapolis", "MN"), ("Detroit", "MI"), ("Nashville", "TN"), ("Kansas City", "MO"),
    ("Salt Lake City", "UT"), ("Las Vegas", "NV"), ("Columbus", "OH"), ("Omaha", "NE"), ("Boise", "ID"),
    ("Charleston", "WV"), ("Burlington", "VT"), ("Madison", "WI"), ("New Orleans", "LA"), ("Albuquerque", "NM"),
]
# Codes that are not US states (some look like one: two upper-case letters).
FOREIGN_CITIES = [
    ("Toronto", "ON"), ("Vancouver", "BC"), ("Montreal", "QC"), ("Calgary", "AB"), ("Sydney", "NSW"),
    ("London", "UK"), ("Mexico City", "CDMX"),
]
CATEGORIES = ["Electronics", "Books", "Home & Kitchen", "Toys", "Sports", "Beauty", "Grocery", "Clothing"]
ADJECTIVES = [
    "Smart", "Classic", "Portable", "Deluxe", "Organic", "Wireless", "Compact", "Premium", "Eco", "Ultra",
    "Vintage", "Pro", "Mini", "Rugged", "Silent", "Bright",
]
NOUNS = {
    "Electronics": ["Headphones", "Speaker", "Charger", "Monitor", "Keyboard", "Camera"],
    "Books": ["Cookbook", "Novel", "Atlas", "Field Guide", "Anthology", "Notebook"],
    "Home & Kitchen": ["Kettle", "Blender", "Lamp", "Pan Set", "Knife Block", "Rug"],
    "Toys": ["Puzzle", "Robot Kit", "Board Game", "Plush Bear", "Kite", "Train Set"],
    "Sports": ["Yoga Mat", "Water Bottle", "Tennis Racket", "Helmet", "Dumbbells", "Backpack"],
    "Beauty": ["Face Cream", "Shampoo", "Perfume", "Lip Balm", "Hair Dryer", "Serum"],
    "Grocery": ["Coffee Beans", "Olive Oil", "Green Tea", "Honey", "Granola", "Dark Chocolate"],
    "Clothing": ["Jacket", "Sneakers", "T-Shirt", "Scarf", "Jeans", "Raincoat"],
}
COUPONS = ["SAVE10", "FALL25", "FREESHIP", "WELCOME5", "VIP20"]
