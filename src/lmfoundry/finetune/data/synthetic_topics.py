"""Dialogue builders for the synthetic summarization set: one function per topic.

Each builder draws the facts of one conversation (who, what, when, where, how much) from a
`Scene`, writes the turns with randomly chosen phrasings (so no single template can be
memorised) and a one- or two-sentence DialogSum-style summary stating the same facts. Names are
only ever put into the summary when the dialogue says them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lmfoundry.finetune.data import synthetic_vocab as V

T = TypeVar("T")
P1, P2 = "#Person1#", "#Person2#"
Turn = tuple[int, str]


@dataclass(frozen=True)
class Conversation:
    """One generated conversation: turns as (speaker 1|2, text), a summary, and its setting."""

    turns: list[Turn]
    summary: str
    relation: str  # "service" (customer and staff), "friends" or "formal": picks fitting small talk


class Scene:
    """Random choices for one conversation; first names are never reused within a scene."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._used: set[str] = set()

    def pick(self, options: Sequence[T]) -> T:
        return self.rng.choice(list(options))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def number(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def first(self) -> str:
        name = self.pick([n for n in V.FIRST_NAMES if n not in self._used])
        self._used.add(name)
        return name

    def full(self) -> str:
        return f"{self.first()} {self.pick(V.SURNAMES)}"


def _turns(*items: Turn | None) -> list[Turn]:
    return [item for item in items if item is not None]


def restaurant(s: Scene) -> Conversation:
    people, day, time, place = s.number(2, 8), s.pick(V.DAYS), s.pick(V.EVENING_TIMES), s.pick(V.RESTAURANTS)
    name = s.full()
    window = s.chance(0.4)
    turns = _turns(
        (
            2,
            s.pick(
                [
                    f"Good evening, {place}. How can I help you?",
                    f"Hello, this is {place}. What can I do for you?",
                ]
            ),
        ),
        (
            1,
            s.pick(
                [
                    f"I'd like to book a table for {people} on {day}, please.",
                    f"Hi, do you have a table for {people} people this {day}?",
                    f"Could I reserve a table for {people} for {day}?",
                ]
            ),
        ),
        (
            2,
            s.pick(
                [
                    "What time would you like?",
                    "Certainly. At what time?",
                    "Let me check. What time were you thinking of?",
                ]
            ),
        ),
        (1, s.pick([f"Around {time}, if possible.", f"{time} would be perfect.", f"Is {time} available?"])),
        (
            2,
            s.pick(
                [
                    f"Yes, {time} is fine. Can I have your name, please?",
                    f"We have a table at {time}. What name is it under?",
                ]
            ),
        ),
        (1, s.pick([f"It's {name}.", f"{name}.", f"The name is {name}."])),
        (1, "Could we sit by the window?") if window else None,
        (2, "Of course, I'll note that down.") if window else None,
        (
            2,
            s.pick(
                [
                    f"Great, a table for {people} on {day} at {time}. See you then!",
                    "All set. We look forward to seeing you.",
                ]
            ),
        ),
    )
    extra = " by the window" if window else ""
    summary = s.pick(
        [
            f"{P1} books a table{extra} for {people} at {place} on {day} at {time} under the name {name}.",
            f"{P1} reserves a table{extra} for {people} people at {place} for {day} at {time}. The booking is under {name}.",
        ]
    )
    return Conversation(turns, summary, "service")


def doctor(s: Scene) -> Conversation:
    symptom, day, time, doc = s.pick(V.SYMPTOMS), s.pick(V.WEEKDAYS), s.pick(V.DAY_TIMES), s.pick(V.SURNAMES)
    weeks = s.number(1, 3)
    name = s.full()
    turns = _turns(
        (
            2,
            s.pick(
                [
                    "Good morning, Riverside Clinic.",
                    "Hello, doctor's surgery, how can I help?",
                    "Health centre, reception speaking.",
                ]
            ),
        ),
        (
            1,
            s.pick(
                [
                    f"Hello, I'd like to make an appointment. I've had {symptom} for {weeks} week{'s' if weeks > 1 else ''}.",
                    f"Hi, I need to see a doctor. I've been having {symptom} for about {weeks} week{'s' if weeks > 1 else ''}.",
                ]
            ),
        ),
        (2, s.pick(["I'm sorry to hear that. May I have your name?", "Can I take your full name, please?"])),
        (1, f"{name}."),
        (
            2,
            s.pick(
                [
                    f"Dr. {doc} has a free slot on {day} at {time}. Does that suit you?",
                    f"The earliest I can offer is {day} at {time} with Dr. {doc}.",
                ]
            ),
        ),
        (1, s.pick(["Yes, that works for me.", "That's fine, I'll take it.", "Perfect, thank you."])),
        (2, "Please bring your insurance card.") if s.chance(0.5) else None,
        (2, s.pick(["You're booked in. Get well soon.", "Done. See you then."])),
    )
    summary = s.pick(
        [
            f"{name} has had {symptom} and makes an appointment with Dr. {doc} on {day} at {time}.",
            f"{P1}, {name}, books an appointment with Dr. {doc} for {day} at {time} because of {symptom}.",
        ]
    )
    return Conversation(turns, summary, "service")


def job_interview(s: Scene) -> Conversation:
    role, company = s.pick(V.JOB_ROLES), s.pick(V.COMPANIES)
    years, candidate = s.number(2, 9), s.first()
    start = s.pick(V.MONTHS)
    turns = _turns(
        (
            1,
            s.pick(
                [
                    f"Please have a seat, {candidate}. Thanks for coming in.",
                    f"Welcome to {company}, {candidate}. Please sit down.",
                ]
            ),
        ),
        (2, s.pick(["Thank you for having me.", "Thank you, I'm glad to be here."])),
        (
            1,
            s.pick(
                [
                    f"So, why do you want to work as a {role} at {company}?",
                    f"What makes you interested in the {role} position at {company}?",
                ]
            ),
        ),
        (
            2,
            s.pick(
                [
                    f"I have {years} years of experience and I'd like to grow with a company like {company}.",
                    f"I've worked in this field for {years} years and I think I can bring a lot to the team.",
                ]
            ),
        ),
        (1, "What would you say is your biggest strength?") if s.chance(0.5) else None,
        (
            2,
            s.pick(
                [
                    "I'm very organised and I work well under pressure.",
                    "I learn quickly and I enjoy working with people.",
                ]
            ),
        ),
        (1, s.pick(["When could you start?", "If we offer you the job, when would you be available?"])),
        (2, f"I could start in {start}."),
        (
            1,
            s.pick(
                ["Good. We'll let you know by the end of the week.", "Thank you. We'll be in touch soon."]
            ),
        ),
    )
    summary = s.pick(
        [
            f"{P1} interviews {candidate} for a {role} position at {company}. {candidate} has {years} years of experience and could start in {start}.",
            f"{candidate} has a job interview with {P1} for the {role} job at {company}, mentions {years} years of experience and can start in {start}.",
        ]
    )
    return Conversation(turns, summary, "formal")


def lost_luggage(s: Scene) -> Conversation:
    airline, bag, city, name = s.pick(V.AIRLINES), s.pick(V.BAG_DESCRIPTIONS), s.pick(V.CITIES), s.full()
    hotel, days = s.pick(V.HOTELS), s.number(1, 3)
    turns = _turns(
        (
            2,
            s.pick(
                [
                    f"{airline} baggage service. How can I help?",
                    f"Hello, {airline} lost and found desk. What's the problem?",
                ]
            ),
        ),
        (
            1,
            s.pick(
                [
                    f"My bag didn't arrive on the flight from {city}.",
                    f"I just landed from {city} and my luggage isn't on the belt.",
                ]
            ),
        ),
        (
            2,
            s.pick(
                ["I'm sorry. Can you describe it?", "That's annoying, I'm sorry. What does it look like?"]
            ),
        ),
        (1, f"It's {bag}."),
        (2, s.pick(["And your name, please?", "Could I have your name for the report?"])),
        (1, f"{name}."),
        (
            2,
            s.pick(
                [
                    f"Thank you. It should arrive within {days} day{'s' if days > 1 else ''}. Where should we deliver it?",
                    f"We'll find it. It usually takes {days} day{'s' if days > 1 else ''}. What's your address here?",
                ]
            ),
        ),
        (1, f"I'm staying at {hotel}."),
        (2, "We'll send it there as soon as it arrives."),
    )
    summary = s.pick(
        [
            f"{name}'s luggage, {bag}, is missing after a {airline} flight from {city}. {P2} says it should arrive within {days} day{'s' if days > 1 else ''} and will deliver it to {hotel}.",
            f"{P1}, {name}, reports {bag} lost on the flight from {city}. It will be delivered to {hotel} within {days} day{'s' if days > 1 else ''}.",
        ]
    )
    return Conversation(turns, summary, "service")


def buy_phone(s: Scene) -> Conversation:
    brand, colour = s.pick(V.PHONE_BRANDS), s.pick(V.PHONE_COLOURS)
    model, price, storage = (
        s.number(5, 14),
        s.pick([299, 349, 399, 449, 499, 599, 699]),
        s.pick([64, 128, 256]),
    )
    case = s.chance(0.5)
    turns = _turns(
        (
            2,
            s.pick(
                [
                    "Hi there, are you looking for anything in particular?",
                    "Hello, can I help you find something?",
                ]
            ),
        ),
        (
            1,
            s.pick(
                [
                    "I need a new phone. Mine is really slow.",
                    "Yes, I'm looking for a new phone with a good camera.",
                ]
            ),
        ),
        (
            2,
            s.pick(
                [
                    f"The {brand} {model} is very popular. It has {storage} gigabytes of storage.",
                    f"Have a look at the {brand} {model}, it comes with {storage} gigabytes.",
                ]
            ),
        ),
        (1, s.pick(["How much is it?", "What does it cost?"])),
        (2, f"It's {price} dollars."),
        (1, s.pick([f"OK, I'll take it in {colour}.", f"Fine. Do you have it in {colour}? I'll buy it."])),
        (2, "Would you like a case as well?") if case else None,
        (1, "Yes, please.") if case else None,
        (2, s.pick(["Great, you can pay at the counter.", "Let me get one from the back for you."])),
    )
    with_case = " and a case" if case else ""
    summary = s.pick(
        [
            f"{P1} buys a {colour} {brand} {model} with {storage} gigabytes for {price} dollars{with_case}.",
            f"{P2} recommends the {brand} {model}, and {P1} buys it in {colour} for {price} dollars{with_case}.",
        ]
    )
    return Conversation(turns, summary, "service")


def rent_flat(s: Scene) -> Conversation:
    rooms, rent, street = s.number(1, 3), s.pick([650, 800, 900, 1100, 1250, 1400]), s.pick(V.STREETS)
    day, time, agent = s.pick(V.DAYS[:6]), s.pick(V.DAY_TIMES), s.first()
    pets = s.chance(0.4)
    turns = _turns(
        (
            1,
            s.pick(
                [
                    f"Hello, I'm calling about the {rooms}-bedroom flat on {street}.",
                    f"Hi, is the {rooms}-bedroom flat on {street} still available?",
                ]
            ),
        ),
        (
            2,
            s.pick(
                [
                    f"Yes, it is. I'm {agent}, the agent.",
                    f"It is. This is {agent} speaking, I manage the property.",
                ]
            ),
        ),
        (1, s.pick(["How much is the rent?", "What's the monthly rent?"])),
        (
            2,
            s.pick(
                [f"It's {rent} pounds a month, bills not included.", f"{rent} pounds per month plus bills."]
            ),
        ),
        (1, "Are pets allowed? I have a cat.") if pets else None,
        (2, "Yes, small pets are fine.") if pets else None,
        (1, s.pick(["Could I come and see it?", "When can I view it?"])),
        (2, s.pick([f"How about {day} at {time}?", f"I can show it to you on {day} at {time}."])),
        (1, "That works. See you then."),
    )
    pet_part = " Pets are allowed." if pets else ""
    summary = s.pick(
        [
            f"{P1} calls {agent} about the {rooms}-bedroom flat on {street}, which costs {rent} pounds a month.{pet_part} They arrange a viewing on {day} at {time}.",
            f"{P1} will view the {rooms}-bedroom flat on {street} with {agent} on {day} at {time}. The rent is {rent} pounds a month.{pet_part}",
        ]
    )
    return Conversation(turns, summary, "service")


def birthday(s: Scene) -> Conversation:
    friend, day, time = s.first(), s.pick(V.DAYS[4:]), s.pick(V.EVENING_TIMES)
    age, place, gift = s.number(20, 60), s.pick(V.PARTY_PLACES), s.pick(V.GIFTS)
    says_age = s.chance(0.5)
    turns = _turns(
        (
            1,
            f"Did you know {friend} turns {age} on {day}?"
            if says_age
            else f"{friend}'s birthday is on {day}. Shall we do something for it?",
        ),
        (2, s.pick(["Oh, I almost forgot! What do you have in mind?", "Yes! We should plan a surprise."])),
        (1, s.pick([f"How about a party {place}?", f"I was thinking we could have a party {place}."])),
        (2, s.pick(["Great idea. What time?", "Sounds fun. When should we start?"])),
        (1, f"Let's say {time}."),
        (2, s.pick([f"And for a present, maybe {gift}?", f"I think {friend} would love {gift}."])),
        (1, s.pick(["Perfect, I'll buy it tomorrow.", "Good idea, let's split the cost."])),
    )
    if says_age:
        summary = f"{friend} turns {age} on {day}. {P1} and {P2} plan a party {place} at {time} and choose {gift} as a present."
    else:
        summary = s.pick(
            [
                f"{P1} and {P2} plan a party {place} for {friend}'s birthday on {day} at {time} and will give {gift}.",
                f"For {friend}'s birthday on {day}, {P1} and {P2} organise a party {place} at {time} and pick {gift} as a gift.",
            ]
        )
    return Conversation(turns, summary, "friends")


def car_repair(s: Scene) -> Conversation:
    symptom, cause, part = s.pick(V.CAR_PROBLEMS)
    cost, day, mechanic = s.pick([80, 120, 150, 220, 300, 450]), s.pick(V.WEEKDAYS), s.first()
    turns = _turns(
        (
            2,
            s.pick(
                [
                    f"Hi, I'm {mechanic}. What seems to be the problem?",
                    f"Morning, {mechanic} here. What can I do for you?",
                ]
            ),
        ),
        (1, s.pick([f"Well, {symptom}.", f"I'm worried because {symptom}."])),
        (2, s.pick(["Let me have a look.", "OK, give me a minute to check."])),
        (2, s.pick([f"I see, {cause}.", f"Right, it looks like {cause}."])),
        (1, s.pick(["How much will that cost?", "Is it expensive to fix?"])),
        (2, s.pick([f"About {cost} dollars, including labour.", f"It'll be around {cost} dollars."])),
        (1, s.pick(["When will it be ready?", "How long will it take?"])),
        (2, s.pick([f"You can pick it up on {day}.", f"It should be ready by {day}."])),
    )
    summary = s.pick(
        [
            f"{P1} brings the car to {mechanic} because {symptom}. {mechanic} finds that {cause}; the repair costs about {cost} dollars and will be ready on {day}.",
            f"{mechanic} tells {P1} that {cause}. Fixing the {part} costs about {cost} dollars and the car will be ready on {day}.",
        ]
    )
    return Conversation(turns, summary, "service")


def library(s: Scene) -> Conversation:
    genre, weeks, books = s.pick(V.BOOK_GENRES), s.number(2, 4), s.number(1, 5)
    late = s.chance(0.4)
    fine = s.pick([2, 3, 5])
    turns = _turns(
        (
            1,
            s.pick(
                [
                    f"Hi, I'd like to borrow {books} book{'s' if books > 1 else ''} about {genre}.",
                    f"Excuse me, where can I find books on {genre}?",
                ]
            ),
        ),
        (
            2,
            s.pick(
                [
                    f"The {genre} section is on the second floor.",
                    f"{genre.capitalize()} is upstairs, next to the reading room.",
                ]
            ),
        ),
        (1, "And I'm returning this one. I'm afraid it's a few days late.") if late else None,
        (2, f"That's a fine of {fine} dollars.") if late else None,
        (1, s.pick(["How long can I keep the books?", "What's the loan period?"])),
        (2, s.pick([f"{weeks} weeks. You can renew them online.", f"You can keep them for {weeks} weeks."])),
        (1, "Great, thanks."),
    )
    late_part = f" {P1} also returns a late book and pays a {fine}-dollar fine." if late else ""
    summary = (
        f"{P2} tells {P1} that {genre} books are upstairs and can be borrowed for {weeks} weeks.{late_part}"
    )
    return Conversation(turns, summary, "service")


def travel_weather(s: Scene) -> Conversation:
    city, (weather, item) = s.pick(V.CITIES), s.pick(V.WEATHER)
    how, days = s.pick(V.TRANSPORT), s.number(2, 10)
    friend = s.first() if s.chance(0.5) else None
    with_friend = f" with {friend}" if friend else ""
    says_days = s.chance(0.5)
    turns = _turns(
        (
            1,
            f"Guess what, I'm off to {city} for {days} days{with_friend}."
            if says_days
            else f"I'm going to {city} next week{with_friend}!",
        ),
        (2, s.pick(["Lucky you! How are you getting there?", "Wow, nice. Are you flying?"])),
        (1, s.pick([f"We're going {how}.", f"I'm travelling {how}."])),
        (2, s.pick(["Have you checked the weather?", "What's the weather like there this time of year?"])),
        (1, s.pick([f"The forecast says it will be {weather}.", f"Apparently it'll be {weather} all week."])),
        (2, s.pick([f"Then don't forget {item}.", f"You'd better pack {item}."])),
        (1, "Good point, I will."),
    )
    length = f"for {days} days " if says_days else ""
    summary = s.pick(
        [
            f"{P1} is travelling to {city} {length}{how}{with_friend}. The forecast is {weather}, so {P2} suggests taking {item}.",
            f"{P1} tells {P2} about a trip to {city} {length}{how}{with_friend}; since it will be {weather}, {P2} advises packing {item}.",
        ]
    )
    return Conversation(turns, summary, "friends")


def return_product(s: Scene) -> Conversation:
    (product, fault), days = s.pick(V.PRODUCTS), s.number(2, 20)
    refund = s.chance(0.5)
    turns = _turns(
        (
            1,
            s.pick(
                [
                    f"Hi, I bought {product} here {days} days ago and {fault}.",
                    f"I'd like to return {product}. {fault.capitalize()}.",
                ]
            ),
        ),
        (
            2,
            s.pick(
                [
                    "I'm sorry about that. Do you have the receipt?",
                    "Sorry to hear that. Have you got your receipt?",
                ]
            ),
        ),
        (1, s.pick(["Yes, here it is.", "Yes, I kept it."])),
        (2, "Would you like a refund or an exchange?"),
        (
            1,
            s.pick(["A refund, please.", "I'd prefer my money back."])
            if refund
            else s.pick(["I'll exchange it for a new one.", "An exchange is fine."]),
        ),
        (
            2,
            s.pick(
                [
                    "No problem, the money will be back on your card in a few days.",
                    "Done, the refund is on its way.",
                ]
            )
            if refund
            else s.pick(["Here's a new one for you.", "Let me get you a replacement."]),
        ),
    )
    outcome = "gets a refund" if refund else "exchanges it for a new one"
    summary = s.pick(
        [
            f"{P1} returns {product} because {fault} and {outcome}.",
            f"{P1} brings back {product} with the receipt since {fault}; {P1} {outcome}.",
        ]
    )
    return Conversation(turns, summary, "service")


def moving_house(s: Scene) -> Conversation:
    city, day, movers = s.pick(V.CITIES), s.pick(V.DAYS[5:]), s.pick(V.MOVERS)
    helper = s.first()
    month = s.pick(V.MONTHS)
    turns = _turns(
        (
            1,
            s.pick(
                [
                    f"We're finally moving to {city} in {month}!",
                    f"Did I tell you? We're moving to {city} in {month}.",
                ]
            ),
        ),
        (2, s.pick(["Really? That's big news. Why?", "Wow! What brought that on?"])),
        (1, s.pick(["My partner got a new job there.", "We want to be closer to family."])),
        (2, "Do you need help with the move?"),
        (
            1,
            s.pick(
                [
                    f"We've booked {movers}, but {helper} is also coming to help on {day}.",
                    f"{helper} offered to help on {day}, and we're using {movers}.",
                ]
            ),
        ),
        (2, s.pick([f"I can come on {day} too.", f"Count me in for {day} as well."])),
        (1, "That would be great, thank you!"),
    )
    summary = s.pick(
        [
            f"{P1} is moving to {city} in {month} using {movers}. {helper} and {P2} will help on {day}.",
            f"{P1} tells {P2} about moving to {city} in {month}; {P2} offers to help on {day} along with {helper}, and they have booked {movers}.",
        ]
    )
    return Conversation(turns, summary, "friends")


def hotel(s: Scene) -> Conversation:
    hotel_name, nights, name = s.pick(V.HOTELS), s.number(1, 6), s.full()
    room, breakfast = s.number(101, 512), s.chance(0.5)
    time = s.pick(["7 am", "7:30 am", "8 am"])
    turns = _turns(
        (
            2,
            s.pick(
                [f"Welcome to {hotel_name}. Checking in?", f"Good afternoon and welcome to {hotel_name}."]
            ),
        ),
        (
            1,
            s.pick(
                [
                    f"Yes, I have a reservation for {nights} night{'s' if nights > 1 else ''} under {name}.",
                    f"Hi, I booked a room for {nights} night{'s' if nights > 1 else ''}. The name is {name}.",
                ]
            ),
        ),
        (2, s.pick([f"Here you are. You're in room {room}.", f"Found it. Your room is {room}."])),
        (1, "Is breakfast included?") if breakfast else None,
        (2, f"Yes, it's served from {time} in the restaurant.") if breakfast else None,
        (1, s.pick(["Thank you.", "Great, thanks a lot."])),
    )
    b_part = f" Breakfast is included from {time}." if breakfast else ""
    summary = f"{name} checks in at {hotel_name} for {nights} night{'s' if nights > 1 else ''} and gets room {room}.{b_part}"
    return Conversation(turns, summary, "service")


def gym(s: Scene) -> Conversation:
    plan, price = s.pick(V.GYM_PLANS)
    classes = s.pick(["yoga", "spinning", "swimming", "boxing", "pilates"])
    day = s.pick(V.WEEKDAYS)
    turns = _turns(
        (1, s.pick(["Hi, I'm interested in joining the gym.", "Hello, how much is a membership here?"])),
        (
            2,
            s.pick(
                [f"Our {plan} plan is {price} dollars.", f"We have a {plan} membership for {price} dollars."]
            ),
        ),
        (
            1,
            s.pick([f"Does that include {classes} classes?", f"Can I join the {classes} classes with that?"]),
        ),
        (
            2,
            s.pick(
                [
                    f"Yes, {classes} is included. There's a class every {day}.",
                    f"Yes. The {classes} class is on {day} evenings.",
                ]
            ),
        ),
        (1, s.pick(["OK, I'll sign up.", "Sounds good, I'll join."])),
    )
    summary = s.pick(
        [
            f"{P1} signs up for the {plan} gym membership for {price} dollars, which includes {classes} classes on {day}.",
            f"{P1} joins the gym on the {plan} plan at {price} dollars; {classes} classes run on {day}.",
        ]
    )
    return Conversation(turns, summary, "service")


def train_ticket(s: Scene) -> Conversation:
    city, time, price = s.pick(V.CITIES), s.pick(V.DAY_TIMES), s.pick([25, 40, 55, 70, 90])
    ret, platform, card = s.chance(0.5), s.number(1, 12), s.chance(0.5)
    kind = "return" if ret else "single"
    turns = _turns(
        (1, s.pick([f"A {kind} ticket to {city}, please.", f"Hi, can I get a {kind} to {city}?"])),
        (
            2,
            s.pick(
                [
                    f"The next train leaves at {time}. That's {price} euros.",
                    f"There's one at {time}; the fare is {price} euros.",
                ]
            ),
        ),
        (1, s.pick(["Which platform?", "Where does it leave from?"])),
        (2, f"Platform {platform}."),
        (1, "Thanks. Can I pay by card?") if card else None,
        (2, "Of course.") if card else None,
    )
    summary = f"{P1} buys a {kind} ticket to {city} for {price} euros. The train leaves at {time} from platform {platform}."
    return Conversation(turns, summary, "service")


def haircut(s: Scene) -> Conversation:
    day, time, stylist = s.pick(V.DAYS[1:6]), s.pick(V.DAY_TIMES), s.first()
    service = s.pick(["a haircut", "a trim", "a haircut and colour", "a beard trim"])
    price = s.pick([20, 30, 45, 60, 85])
    turns = _turns(
        (
            2,
            s.pick(
                [
                    "Hello, Style Studio, how can I help?",
                    "Style Studio, good morning!",
                    "Hi, thanks for calling Style Studio.",
                ]
            ),
        ),
        (1, s.pick([f"Hi, I'd like to book {service}.", f"Could I make an appointment for {service}?"])),
        (
            2,
            s.pick(
                [
                    f"{stylist} is free on {day} at {time}.",
                    f"We have a slot with {stylist} on {day} at {time}.",
                ]
            ),
        ),
        (1, s.pick(["How much will it be?", "What does it cost?"])),
        (2, f"{price} dollars."),
        (1, s.pick(["Great, book me in.", "OK, that's fine."])),
    )
    summary = f"{P1} books {service} with {stylist} on {day} at {time} for {price} dollars."
    return Conversation(turns, summary, "service")


def study_group(s: Scene) -> Conversation:
    subject = s.pick(["maths", "chemistry", "history", "economics", "biology", "physics"])
    day, place, classmate = (
        s.pick(V.DAYS),
        s.pick(["the library", "the cafe", "my place", "the student centre"]),
        s.first(),
    )
    exam_day = s.pick(V.WEEKDAYS)
    turns = _turns(
        (
            1,
            s.pick(
                [
                    f"Are you ready for the {subject} exam on {exam_day}?",
                    f"I'm so nervous about {subject} on {exam_day}.",
                ]
            ),
        ),
        (
            2,
            s.pick(
                [
                    "Not really. I still don't understand the last chapter.",
                    "Me neither, there's so much to learn.",
                ]
            ),
        ),
        (
            1,
            s.pick(
                [
                    f"Let's study together on {day} at {place}.",
                    f"Why don't we meet at {place} on {day} and revise?",
                ]
            ),
        ),
        (
            2,
            s.pick(
                [f"Good idea. Should we ask {classmate} too?", f"Sure. {classmate} wanted to join as well."]
            ),
        ),
        (1, "Yes, the more the better."),
    )
    summary = s.pick(
        [
            f"{P1} and {P2} are worried about the {subject} exam on {exam_day}, so they will study together with {classmate} at {place} on {day}.",
            f"Before the {subject} exam on {exam_day}, {P1}, {P2} and {classmate} plan to revise at {place} on {day}.",
        ]
    )
    return Conversation(turns, summary, "friends")


def plumber(s: Scene) -> Conversation:
    problem = s.pick(
        [
            "the kitchen sink is blocked",
            "the bathroom tap is dripping",
            "there's a leak under the sink",
            "the toilet keeps running",
        ]
    )
    day, time, street = s.pick(V.WEEKDAYS), s.pick(V.DAY_TIMES), s.pick(V.STREETS)
    number, fee = s.number(2, 90), s.pick([50, 60, 75, 90])
    turns = _turns(
        (
            2,
            s.pick(
                [
                    "Quick Fix Plumbing, good morning.",
                    "Hello, Quick Fix Plumbing, how can I help?",
                    "Quick Fix, this is the office.",
                ]
            ),
        ),
        (
            1,
            s.pick(
                [f"Hi, {problem}. Can someone come and look at it?", f"Hello, I have a problem: {problem}."]
            ),
        ),
        (2, s.pick(["What's the address?", "Where do you live?"])),
        (1, f"{number} {street}."),
        (
            2,
            s.pick(
                [
                    f"Our plumber can be there on {day} at {time}. The call-out fee is {fee} dollars.",
                    f"We can come {day} at {time}; there's a {fee}-dollar call-out charge.",
                ]
            ),
        ),
        (1, "That's fine, see you then."),
    )
    summary = f"{P1} calls a plumber because {problem}. A plumber will come to {number} {street} on {day} at {time} for a {fee}-dollar call-out fee."
    return Conversation(turns, summary, "service")


TOPICS: dict[str, Callable[[Scene], Conversation]] = {
    "restaurant booking": restaurant,
    "doctor appointment": doctor,
    "job interview": job_interview,
    "lost luggage": lost_luggage,
    "buying a phone": buy_phone,
    "renting a flat": rent_flat,
    "birthday plans": birthday,
    "car repair": car_repair,
    "library": library,
    "travel and weather": travel_weather,
    "returning a product": return_product,
    "moving house": moving_house,
    "hotel check-in": hotel,
    "gym membership": gym,
    "train tickets": train_ticket,
    "hair salon": haircut,
    "study group": study_group,
    "plumbing repair": plumber,
}
