"""A small built-in closed-book QA set: stable, well-known facts with short answers.

Written for this project (no download). Each entry is (id, question, answer, other accepted answers).
"""

from __future__ import annotations

QUESTIONS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("cbqa-01", "What is the capital of France?", "Paris", ()),
    ("cbqa-02", "What is the capital of Japan?", "Tokyo", ()),
    ("cbqa-03", "Which planet is known as the Red Planet?", "Mars", ()),
    ("cbqa-04", "What is the largest planet in the Solar System?", "Jupiter", ()),
    ("cbqa-05", "What is the chemical symbol for gold?", "Au", ()),
    ("cbqa-06", "What is the chemical formula of water?", "H2O", ()),
    ("cbqa-07", "How many continents are there on Earth?", "seven", ("7",)),
    ("cbqa-08", "How many legs does a spider have?", "eight", ("8",)),
    ("cbqa-09", "Who wrote the play Romeo and Juliet?", "William Shakespeare", ("Shakespeare",)),
    ("cbqa-10", "Who painted the Mona Lisa?", "Leonardo da Vinci", ("da Vinci", "Leonardo")),
    ("cbqa-11", "What is the largest ocean on Earth?", "the Pacific Ocean", ("Pacific",)),
    (
        "cbqa-12",
        "What is the boiling point of water at sea level in degrees Celsius?",
        "100",
        ("100 degrees",),
    ),
    ("cbqa-13", "What gas do plants absorb from the air for photosynthesis?", "carbon dioxide", ("CO2",)),
    ("cbqa-14", "What is the smallest prime number?", "2", ("two",)),
    ("cbqa-15", "How many days are there in a leap year?", "366", ()),
    ("cbqa-16", "What is the longest river in South America?", "the Amazon", ("Amazon River",)),
    ("cbqa-17", "In which country are the pyramids of Giza?", "Egypt", ()),
    ("cbqa-18", "What is the hardest natural substance?", "diamond", ()),
    ("cbqa-19", "Which element has the atomic number 1?", "hydrogen", ()),
    ("cbqa-20", "What is the square root of 81?", "9", ("nine",)),
    ("cbqa-21", "Who developed the theory of general relativity?", "Albert Einstein", ("Einstein",)),
    ("cbqa-22", "What is the main language spoken in Brazil?", "Portuguese", ()),
    ("cbqa-23", "What is the currency of the United Kingdom?", "the pound sterling", ("pound", "pounds")),
    ("cbqa-24", "How many sides does a hexagon have?", "six", ("6",)),
    ("cbqa-25", "What is the freezing point of water in degrees Fahrenheit?", "32", ("32 degrees",)),
    ("cbqa-26", "Which organ pumps blood through the human body?", "the heart", ()),
    ("cbqa-27", "What is the capital of Italy?", "Rome", ()),
    ("cbqa-28", "Which programming language is named after a British comedy group?", "Python", ()),
    ("cbqa-29", "What is the tallest mountain above sea level?", "Mount Everest", ("Everest",)),
    ("cbqa-30", "What is the closest star to the Earth?", "the Sun", ("Sun",)),
)
