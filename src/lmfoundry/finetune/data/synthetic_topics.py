"""Dialogue builders for the synthetic summarization set: one function per topic, and `TOPICS`.

Each builder draws the facts of one conversation (who, what, when, where, how much) from a
`Scene` (`synthetic_scene.py`), writes the turns with randomly chosen phrasings (so no single
template can be memorised) and a one- or two-sentence DialogSum-style summary stating the same
facts. Names are only ever put into the summary when the dialogue says them. This module holds
the service topics (a customer and staff); `synthetic_topics_social.py` holds the others.
"""

from __future__ import annotations

from collections.abc import Callable

from lmfoundry.finetune.data import synthetic_topics_social as social
from lmfoundry.finetune.data import synthetic_vocab as V
from lmfoundry.finetune.data.synthetic_scene import P1, P2, Conversation, Scene, turn_list


def restaurant(s: Scene) -> Conversation:
    people, day, time, place = s.number(2, 8), s.pick(V.DAYS), s.pick(V.EVENING_TIMES), s.pick(V.RESTAURANTS)
    name = s.full()
    window = s.chance(0.4)
    turns = turn_list(
        s.say(
            2,
            f"Good evening, {place}. How can I help you?",
            f"Hello, this is {place}. What can I do for you?",
        ),
        s.say(
            1,
            f"I'd like to book a table for {people} on {day}, please.",
            f"Hi, do you have a table for {people} people this {day}?",
            f"Could I reserve a table for {people} for {day}?",
        ),
        s.say(
            2,
            "What time would you like?",
            "Certainly. At what time?",
            "Let me check. What time were you thinking of?",
        ),
        s.say(1, f"Around {time}, if possible.", f"{time} would be perfect.", f"Is {time} available?"),
        s.say(
            2,
            f"Yes, {time} is fine. Can I have your name, please?",
            f"We have a table at {time}. What name is it under?",
        ),
        s.say(1, f"It's {name}.", f"{name}.", f"The name is {name}."),
        (1, "Could we sit by the window?") if window else None,
        (2, "Of course, I'll note that down.") if window else None,
        s.say(
            2,
            f"Great, a table for {people} on {day} at {time}. See you then!",
            "All set. We look forward to seeing you.",
        ),
    )
    extra = " by the window" if window else ""
    return s.conversation(
        turns,
        "service",
        f"{P1} books a table{extra} for {people} at {place} on {day} at {time} under the name {name}.",
        f"{P1} reserves a table{extra} for {people} people at {place} for {day} at {time}. The booking is under {name}.",
    )


def doctor(s: Scene) -> Conversation:
    symptom, day, time, doc = s.pick(V.SYMPTOMS), s.pick(V.WEEKDAYS), s.pick(V.DAY_TIMES), s.pick(V.SURNAMES)
    weeks = s.number(1, 3)
    name = s.full()
    turns = turn_list(
        s.say(
            2,
            "Good morning, Riverside Clinic.",
            "Hello, doctor's surgery, how can I help?",
            "Health centre, reception speaking.",
        ),
        s.say(
            1,
            f"Hello, I'd like to make an appointment. I've had {symptom} for {weeks} week{'s' if weeks > 1 else ''}.",
            f"Hi, I need to see a doctor. I've been having {symptom} for about {weeks} week{'s' if weeks > 1 else ''}.",
        ),
        s.say(2, "I'm sorry to hear that. May I have your name?", "Can I take your full name, please?"),
        (1, f"{name}."),
        s.say(
            2,
            f"Dr. {doc} has a free slot on {day} at {time}. Does that suit you?",
            f"The earliest I can offer is {day} at {time} with Dr. {doc}.",
        ),
        s.say(1, "Yes, that works for me.", "That's fine, I'll take it.", "Perfect, thank you."),
        (2, "Please bring your insurance card.") if s.chance(0.5) else None,
        s.say(2, "You're booked in. Get well soon.", "Done. See you then."),
    )
    return s.conversation(
        turns,
        "service",
        f"{name} has had {symptom} and makes an appointment with Dr. {doc} on {day} at {time}.",
        f"{P1}, {name}, books an appointment with Dr. {doc} for {day} at {time} because of {symptom}.",
    )


def lost_luggage(s: Scene) -> Conversation:
    airline, bag, city, name = s.pick(V.AIRLINES), s.pick(V.BAG_DESCRIPTIONS), s.pick(V.CITIES), s.full()
    hotel, days = s.pick(V.HOTELS), s.number(1, 3)
    turns = turn_list(
        s.say(
            2,
            f"{airline} baggage service. How can I help?",
            f"Hello, {airline} lost and found desk. What's the problem?",
        ),
        s.say(
            1,
            f"My bag didn't arrive on the flight from {city}.",
            f"I just landed from {city} and my luggage isn't on the belt.",
        ),
        s.say(2, "I'm sorry. Can you describe it?", "That's annoying, I'm sorry. What does it look like?"),
        (1, f"It's {bag}."),
        s.say(2, "And your name, please?", "Could I have your name for the report?"),
        (1, f"{name}."),
        s.say(
            2,
            f"Thank you. It should arrive within {days} day{'s' if days > 1 else ''}. Where should we deliver it?",
            f"We'll find it. It usually takes {days} day{'s' if days > 1 else ''}. What's your address here?",
        ),
        (1, f"I'm staying at {hotel}."),
        (2, "We'll send it there as soon as it arrives."),
    )
    return s.conversation(
        turns,
        "service",
        f"{name}'s luggage, {bag}, is missing after a {airline} flight from {city}. {P2} says it should arrive within {days} day{'s' if days > 1 else ''} and will deliver it to {hotel}.",
        f"{P1}, {name}, reports {bag} lost on the flight from {city}. It will be delivered to {hotel} within {days} day{'s' if days > 1 else ''}.",
    )


def buy_phone(s: Scene) -> Conversation:
    brand, colour = s.pick(V.PHONE_BRANDS), s.pick(V.PHONE_COLOURS)
    model, price, storage = (
        s.number(5, 14),
        s.pick([299, 349, 399, 449, 499, 599, 699]),
        s.pick([64, 128, 256]),
    )
    case = s.chance(0.5)
    turns = turn_list(
        s.say(
            2,
            "Hi there, are you looking for anything in particular?",
            "Hello, can I help you find something?",
        ),
        s.say(
            1,
            "I need a new phone. Mine is really slow.",
            "Yes, I'm looking for a new phone with a good camera.",
        ),
        s.say(
            2,
            f"The {brand} {model} is very popular. It has {storage} gigabytes of storage.",
            f"Have a look at the {brand} {model}, it comes with {storage} gigabytes.",
        ),
        s.say(1, "How much is it?", "What does it cost?"),
        (2, f"It's {price} dollars."),
        s.say(1, f"OK, I'll take it in {colour}.", f"Fine. Do you have it in {colour}? I'll buy it."),
        (2, "Would you like a case as well?") if case else None,
        (1, "Yes, please.") if case else None,
        s.say(2, "Great, you can pay at the counter.", "Let me get one from the back for you."),
    )
    with_case = " and a case" if case else ""
    return s.conversation(
        turns,
        "service",
        f"{P1} buys a {colour} {brand} {model} with {storage} gigabytes for {price} dollars{with_case}.",
        f"{P2} recommends the {brand} {model}, and {P1} buys it in {colour} for {price} dollars{with_case}.",
    )


def rent_flat(s: Scene) -> Conversation:
    rooms, rent, street = s.number(1, 3), s.pick([650, 800, 900, 1100, 1250, 1400]), s.pick(V.STREETS)
    day, time, agent = s.pick(V.DAYS[:6]), s.pick(V.DAY_TIMES), s.first()
    pets = s.chance(0.4)
    turns = turn_list(
        s.say(
            1,
            f"Hello, I'm calling about the {rooms}-bedroom flat on {street}.",
            f"Hi, is the {rooms}-bedroom flat on {street} still available?",
        ),
        s.say(
            2,
            f"Yes, it is. I'm {agent}, the agent.",
            f"It is. This is {agent} speaking, I manage the property.",
        ),
        s.say(1, "How much is the rent?", "What's the monthly rent?"),
        s.say(2, f"It's {rent} pounds a month, bills not included.", f"{rent} pounds per month plus bills."),
        (1, "Are pets allowed? I have a cat.") if pets else None,
        (2, "Yes, small pets are fine.") if pets else None,
        s.say(1, "Could I come and see it?", "When can I view it?"),
        s.say(2, f"How about {day} at {time}?", f"I can show it to you on {day} at {time}."),
        (1, "That works. See you then."),
    )
    pet_part = " Pets are allowed." if pets else ""
    return s.conversation(
        turns,
        "service",
        f"{P1} calls {agent} about the {rooms}-bedroom flat on {street}, which costs {rent} pounds a month.{pet_part} They arrange a viewing on {day} at {time}.",
        f"{P1} will view the {rooms}-bedroom flat on {street} with {agent} on {day} at {time}. The rent is {rent} pounds a month.{pet_part}",
    )


def car_repair(s: Scene) -> Conversation:
    symptom, cause, part = s.pick(V.CAR_PROBLEMS)
    cost, day, mechanic = s.pick([80, 120, 150, 220, 300, 450]), s.pick(V.WEEKDAYS), s.first()
    turns = turn_list(
        s.say(
            2,
            f"Hi, I'm {mechanic}. What seems to be the problem?",
            f"Morning, {mechanic} here. What can I do for you?",
        ),
        s.say(1, f"Well, {symptom}.", f"I'm worried because {symptom}."),
        s.say(2, "Let me have a look.", "OK, give me a minute to check."),
        s.say(2, f"I see, {cause}.", f"Right, it looks like {cause}."),
        s.say(1, "How much will that cost?", "Is it expensive to fix?"),
        s.say(2, f"About {cost} dollars, including labour.", f"It'll be around {cost} dollars."),
        s.say(1, "When will it be ready?", "How long will it take?"),
        s.say(2, f"You can pick it up on {day}.", f"It should be ready by {day}."),
    )
    return s.conversation(
        turns,
        "service",
        f"{P1} brings the car to {mechanic} because {symptom}. {mechanic} finds that {cause}; the repair costs about {cost} dollars and will be ready on {day}.",
        f"{mechanic} tells {P1} that {cause}. Fixing the {part} costs about {cost} dollars and the car will be ready on {day}.",
    )


def library(s: Scene) -> Conversation:
    genre, weeks, books = s.pick(V.BOOK_GENRES), s.number(2, 4), s.number(1, 5)
    late = s.chance(0.4)
    fine = s.pick([2, 3, 5])
    turns = turn_list(
        s.say(
            1,
            f"Hi, I'd like to borrow {books} book{'s' if books > 1 else ''} about {genre}.",
            f"Excuse me, where can I find books on {genre}?",
        ),
        s.say(
            2,
            f"The {genre} section is on the second floor.",
            f"{genre.capitalize()} is upstairs, next to the reading room.",
        ),
        (1, "And I'm returning this one. I'm afraid it's a few days late.") if late else None,
        (2, f"That's a fine of {fine} dollars.") if late else None,
        s.say(1, "How long can I keep the books?", "What's the loan period?"),
        s.say(2, f"{weeks} weeks. You can renew them online.", f"You can keep them for {weeks} weeks."),
        (1, "Great, thanks."),
    )
    late_part = f" {P1} also returns a late book and pays a {fine}-dollar fine." if late else ""
    summary = (
        f"{P2} tells {P1} that {genre} books are upstairs and can be borrowed for {weeks} weeks.{late_part}"
    )
    return Conversation(turns, summary, "service")


def return_product(s: Scene) -> Conversation:
    (product, fault), days = s.pick(V.PRODUCTS), s.number(2, 20)
    refund = s.chance(0.5)
    turns = turn_list(
        s.say(
            1,
            f"Hi, I bought {product} here {days} days ago and {fault}.",
            f"I'd like to return {product}. {fault.capitalize()}.",
        ),
        s.say(
            2,
            "I'm sorry about that. Do you have the receipt?",
            "Sorry to hear that. Have you got your receipt?",
        ),
        s.say(1, "Yes, here it is.", "Yes, I kept it."),
        (2, "Would you like a refund or an exchange?"),
        s.say(1, "A refund, please.", "I'd prefer my money back.")
        if refund
        else s.say(1, "I'll exchange it for a new one.", "An exchange is fine."),
        s.say(
            2,
            "No problem, the money will be back on your card in a few days.",
            "Done, the refund is on its way.",
        )
        if refund
        else s.say(2, "Here's a new one for you.", "Let me get you a replacement."),
    )
    outcome = "gets a refund" if refund else "exchanges it for a new one"
    return s.conversation(
        turns,
        "service",
        f"{P1} returns {product} because {fault} and {outcome}.",
        f"{P1} brings back {product} with the receipt since {fault}; {P1} {outcome}.",
    )


def hotel(s: Scene) -> Conversation:
    hotel_name, nights, name = s.pick(V.HOTELS), s.number(1, 6), s.full()
    room, breakfast = s.number(101, 512), s.chance(0.5)
    time = s.pick(["7 am", "7:30 am", "8 am"])
    turns = turn_list(
        s.say(2, f"Welcome to {hotel_name}. Checking in?", f"Good afternoon and welcome to {hotel_name}."),
        s.say(
            1,
            f"Yes, I have a reservation for {nights} night{'s' if nights > 1 else ''} under {name}.",
            f"Hi, I booked a room for {nights} night{'s' if nights > 1 else ''}. The name is {name}.",
        ),
        s.say(2, f"Here you are. You're in room {room}.", f"Found it. Your room is {room}."),
        (1, "Is breakfast included?") if breakfast else None,
        (2, f"Yes, it's served from {time} in the restaurant.") if breakfast else None,
        s.say(1, "Thank you.", "Great, thanks a lot."),
    )
    b_part = f" Breakfast is included from {time}." if breakfast else ""
    summary = f"{name} checks in at {hotel_name} for {nights} night{'s' if nights > 1 else ''} and gets room {room}.{b_part}"
    return Conversation(turns, summary, "service")


def gym(s: Scene) -> Conversation:
    plan, price = s.pick(V.GYM_PLANS)
    classes = s.pick(["yoga", "spinning", "swimming", "boxing", "pilates"])
    day = s.pick(V.WEEKDAYS)
    turns = turn_list(
        s.say(1, "Hi, I'm interested in joining the gym.", "Hello, how much is a membership here?"),
        s.say(2, f"Our {plan} plan is {price} dollars.", f"We have a {plan} membership for {price} dollars."),
        s.say(1, f"Does that include {classes} classes?", f"Can I join the {classes} classes with that?"),
        s.say(
            2,
            f"Yes, {classes} is included. There's a class every {day}.",
            f"Yes. The {classes} class is on {day} evenings.",
        ),
        s.say(1, "OK, I'll sign up.", "Sounds good, I'll join."),
    )
    return s.conversation(
        turns,
        "service",
        f"{P1} signs up for the {plan} gym membership for {price} dollars, which includes {classes} classes on {day}.",
        f"{P1} joins the gym on the {plan} plan at {price} dollars; {classes} classes run on {day}.",
    )


def train_ticket(s: Scene) -> Conversation:
    city, time, price = s.pick(V.CITIES), s.pick(V.DAY_TIMES), s.pick([25, 40, 55, 70, 90])
    ret, platform, card = s.chance(0.5), s.number(1, 12), s.chance(0.5)
    kind = "return" if ret else "single"
    turns = turn_list(
        s.say(1, f"A {kind} ticket to {city}, please.", f"Hi, can I get a {kind} to {city}?"),
        s.say(
            2,
            f"The next train leaves at {time}. That's {price} euros.",
            f"There's one at {time}; the fare is {price} euros.",
        ),
        s.say(1, "Which platform?", "Where does it leave from?"),
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
    turns = turn_list(
        s.say(
            2,
            "Hello, Style Studio, how can I help?",
            "Style Studio, good morning!",
            "Hi, thanks for calling Style Studio.",
        ),
        s.say(1, f"Hi, I'd like to book {service}.", f"Could I make an appointment for {service}?"),
        s.say(
            2, f"{stylist} is free on {day} at {time}.", f"We have a slot with {stylist} on {day} at {time}."
        ),
        s.say(1, "How much will it be?", "What does it cost?"),
        (2, f"{price} dollars."),
        s.say(1, "Great, book me in.", "OK, that's fine."),
    )
    summary = f"{P1} books {service} with {stylist} on {day} at {time} for {price} dollars."
    return Conversation(turns, summary, "service")


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
    turns = turn_list(
        s.say(
            2,
            "Quick Fix Plumbing, good morning.",
            "Hello, Quick Fix Plumbing, how can I help?",
            "Quick Fix, this is the office.",
        ),
        s.say(1, f"Hi, {problem}. Can someone come and look at it?", f"Hello, I have a problem: {problem}."),
        s.say(2, "What's the address?", "Where do you live?"),
        (1, f"{number} {street}."),
        s.say(
            2,
            f"Our plumber can be there on {day} at {time}. The call-out fee is {fee} dollars.",
            f"We can come {day} at {time}; there's a {fee}-dollar call-out charge.",
        ),
        (1, "That's fine, see you then."),
    )
    summary = f"{P1} calls a plumber because {problem}. A plumber will come to {number} {street} on {day} at {time} for a {fee}-dollar call-out fee."
    return Conversation(turns, summary, "service")


TOPICS: dict[str, Callable[[Scene], Conversation]] = {
    "restaurant booking": restaurant,
    "doctor appointment": doctor,
    "job interview": social.job_interview,
    "lost luggage": lost_luggage,
    "buying a phone": buy_phone,
    "renting a flat": rent_flat,
    "birthday plans": social.birthday,
    "car repair": car_repair,
    "library": library,
    "travel and weather": social.travel_weather,
    "returning a product": return_product,
    "moving house": social.moving_house,
    "hotel check-in": hotel,
    "gym membership": gym,
    "train tickets": train_ticket,
    "hair salon": haircut,
    "study group": social.study_group,
    "plumbing repair": plumber,
}
