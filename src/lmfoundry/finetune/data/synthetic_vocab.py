"""Word lists for the synthetic dialogue-summarization set (names, places, times, amounts).

Kept apart from the dialogue templates so both stay readable. Place and shop names never contain
a first name from FIRST_NAMES, so "a person's name in the dialogue" is unambiguous in tests.
"""

from __future__ import annotations

FIRST_NAMES = [
    "Sarah",
    "Tom",
    "Emily",
    "James",
    "Olivia",
    "Daniel",
    "Sophie",
    "Michael",
    "Grace",
    "David",
    "Hannah",
    "Peter",
    "Lucy",
    "Robert",
    "Chloe",
    "Steven",
    "Mia",
    "Jack",
    "Laura",
    "Kevin",
    "Anna",
    "Brian",
    "Rachel",
    "Mark",
    "Julia",
    "Paul",
    "Nina",
    "Victor",
    "Helen",
    "Oscar",
    "Amy",
    "Leo",
    "Karen",
    "Frank",
    "Zoe",
    "Ben",
    "Lily",
    "Sam",
    "Maya",
    "Ethan",
]
SURNAMES = [
    "Miller",
    "Smith",
    "Brown",
    "Wilson",
    "Taylor",
    "Clark",
    "Lewis",
    "Walker",
    "Young",
    "Hall",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Carter",
    "Mitchell",
    "Turner",
    "Parker",
    "Collins",
    "Stewart",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEEKDAYS = DAYS[:5]
MONTHS = ["January", "March", "April", "May", "June", "July", "September", "October", "November"]
EVENING_TIMES = ["6 pm", "6:30 pm", "7 pm", "7:30 pm", "8 pm", "8:30 pm"]
DAY_TIMES = ["9 am", "9:30 am", "10 am", "10:30 am", "11 am", "2 pm", "2:30 pm", "3 pm", "4 pm", "4:30 pm"]
RESTAURANTS = [
    "the Golden Dragon",
    "Bella Napoli",
    "the Blue Harbour",
    "the Olive Tree",
    "Sakura House",
    "the Red Lantern",
    "Casa Verde",
    "the Corner Bistro",
    "the Silver Spoon",
    "Le Petit Jardin",
]
CITIES = [
    "Paris",
    "Rome",
    "Berlin",
    "Lisbon",
    "Madrid",
    "Vienna",
    "Prague",
    "Dublin",
    "Amsterdam",
    "Barcelona",
    "Edinburgh",
    "Copenhagen",
    "Athens",
    "Budapest",
    "Oslo",
]
STREETS = [
    "Elm Street",
    "Park Road",
    "Hill Avenue",
    "Station Road",
    "Maple Lane",
    "River Street",
    "Church Road",
    "Oak Drive",
    "King Street",
    "Garden Lane",
]
PHONE_BRANDS = ["Nova", "Pixelon", "Zentra", "Orbit", "Lumen"]
PHONE_COLOURS = ["black", "silver", "blue", "green", "white", "red"]
JOB_ROLES = [
    "sales assistant",
    "junior accountant",
    "software developer",
    "marketing coordinator",
    "receptionist",
    "graphic designer",
    "data analyst",
    "project manager",
    "nurse",
    "teacher",
]
COMPANIES = [
    "Brightway",
    "Northstar Media",
    "Apex Logistics",
    "Greenfield Bank",
    "Sunrise Foods",
    "Bluepeak Software",
]
AIRLINES = ["SkyJet", "Air Horizon", "EuroWings Express", "BlueBird Airways"]
BAG_DESCRIPTIONS = [
    "a large black suitcase",
    "a red suitcase with wheels",
    "a green backpack",
    "a small grey bag",
    "a blue suitcase with a yellow ribbon",
    "a brown leather bag",
]
HOTELS = [
    "the Grand Plaza",
    "the Riverside Inn",
    "the Park View Hotel",
    "the Seaside Lodge",
    "the City Central Hotel",
]
SYMPTOMS = [
    "a bad cough",
    "a sore throat",
    "headaches",
    "back pain",
    "a fever",
    "trouble sleeping",
    "a rash on the arm",
    "stomach aches",
]
CAR_PROBLEMS = [
    ("the brakes make a squeaking noise", "the brake pads need replacing", "brake pads"),
    ("the engine won't start in the morning", "the battery is dead", "battery"),
    ("there is smoke coming from the engine", "a hose is leaking", "leaking hose"),
    ("the car shakes at high speed", "the tyres need balancing", "tyres"),
    ("the air conditioning blows warm air", "the air conditioning needs regassing", "air conditioning"),
]
PRODUCTS = [
    ("a coffee machine", "it leaks water"),
    ("a pair of shoes", "they are too small"),
    ("a jacket", "the zip is broken"),
    ("a kettle", "it doesn't switch on"),
    ("a lamp", "the bulb holder is cracked"),
    ("a pair of headphones", "the left side has no sound"),
    ("a blender", "the lid doesn't fit"),
    ("a sweater", "it has a hole in the sleeve"),
]
GIFTS = [
    "a book",
    "a scarf",
    "concert tickets",
    "a watch",
    "a board game",
    "a plant",
    "a cookbook",
    "a camera bag",
]
PARTY_PLACES = [
    "at home",
    "in the park",
    "at a bowling alley",
    "at a karaoke bar",
    "at a pizza place",
    "on a boat trip",
]
BOOK_GENRES = ["history", "science fiction", "cooking", "travel", "poetry", "art", "biography"]
WEATHER = [
    ("rainy", "an umbrella"),
    ("very hot", "sun cream"),
    ("cold and windy", "a warm coat"),
    ("snowy", "boots"),
    ("cloudy but mild", "a light jacket"),
]
TRANSPORT = ["by train", "by bus", "by car", "by plane"]
MOVERS = ["a removal company", "a moving van", "a man with a van"]
GYM_PLANS = [("monthly", 40), ("monthly", 35), ("yearly", 360), ("yearly", 400), ("student", 25)]
