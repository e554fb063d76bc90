"""Topic builders for conversations between friends, classmates or interviewer and candidate.

The counterpart of the service topics in `synthetic_topics.py`, which registers these builders
in `TOPICS` too. Each draws its facts from a `Scene` (`synthetic_scene.py`) and writes a summary
from the same facts.
"""

from __future__ import annotations

from lmfoundry.finetune.data import synthetic_vocab as V
from lmfoundry.finetune.data.synthetic_scene import P1, P2, Conversation, Scene, turn_list


def job_interview(s: Scene) -> Conversation:
    role, company = s.pick(V.JOB_ROLES), s.pick(V.COMPANIES)
    years, candidate = s.number(2, 9), s.first()
    start = s.pick(V.MONTHS)
    turns = turn_list(
        s.say(
            1,
            f"Please have a seat, {candidate}. Thanks for coming in.",
            f"Welcome to {company}, {candidate}. Please sit down.",
        ),
        s.say(2, "Thank you for having me.", "Thank you, I'm glad to be here."),
        s.say(
            1,
            f"So, why do you want to work as a {role} at {company}?",
            f"What makes you interested in the {role} position at {company}?",
        ),
        s.say(
            2,
            f"I have {years} years of experience and I'd like to grow with a company like {company}.",
            f"I've worked in this field for {years} years and I think I can bring a lot to the team.",
        ),
        (1, "What would you say is your biggest strength?") if s.chance(0.5) else None,
        s.say(
            2,
            "I'm very organised and I work well under pressure.",
            "I learn quickly and I enjoy working with people.",
        ),
        s.say(1, "When could you start?", "If we offer you the job, when would you be available?"),
        (2, f"I could start in {start}."),
        s.say(1, "Good. We'll let you know by the end of the week.", "Thank you. We'll be in touch soon."),
    )
    return s.conversation(
        turns,
        "formal",
        f"{P1} interviews {candidate} for a {role} position at {company}. {candidate} has {years} years of experience and could start in {start}.",
        f"{candidate} has a job interview with {P1} for the {role} job at {company}, mentions {years} years of experience and can start in {start}.",
    )


def birthday(s: Scene) -> Conversation:
    friend, day, time = s.first(), s.pick(V.DAYS[4:]), s.pick(V.EVENING_TIMES)
    age, place, gift = s.number(20, 60), s.pick(V.PARTY_PLACES), s.pick(V.GIFTS)
    says_age = s.chance(0.5)
    turns = turn_list(
        (
            1,
            f"Did you know {friend} turns {age} on {day}?"
            if says_age
            else f"{friend}'s birthday is on {day}. Shall we do something for it?",
        ),
        s.say(2, "Oh, I almost forgot! What do you have in mind?", "Yes! We should plan a surprise."),
        s.say(1, f"How about a party {place}?", f"I was thinking we could have a party {place}."),
        s.say(2, "Great idea. What time?", "Sounds fun. When should we start?"),
        (1, f"Let's say {time}."),
        s.say(2, f"And for a present, maybe {gift}?", f"I think {friend} would love {gift}."),
        s.say(1, "Perfect, I'll buy it tomorrow.", "Good idea, let's split the cost."),
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


def travel_weather(s: Scene) -> Conversation:
    city, (weather, item) = s.pick(V.CITIES), s.pick(V.WEATHER)
    how, days = s.pick(V.TRANSPORT), s.number(2, 10)
    friend = s.first() if s.chance(0.5) else None
    with_friend = f" with {friend}" if friend else ""
    says_days = s.chance(0.5)
    turns = turn_list(
        (
            1,
            f"Guess what, I'm off to {city} for {days} days{with_friend}."
            if says_days
            else f"I'm going to {city} next week{with_friend}!",
        ),
        s.say(2, "Lucky you! How are you getting there?", "Wow, nice. Are you flying?"),
        s.say(1, f"We're going {how}.", f"I'm travelling {how}."),
        s.say(2, "Have you checked the weather?", "What's the weather like there this time of year?"),
        s.say(1, f"The forecast says it will be {weather}.", f"Apparently it'll be {weather} all week."),
        s.say(2, f"Then don't forget {item}.", f"You'd better pack {item}."),
        (1, "Good point, I will."),
    )
    length = f"for {days} days " if says_days else ""
    return s.conversation(
        turns,
        "friends",
        f"{P1} is travelling to {city} {length}{how}{with_friend}. The forecast is {weather}, so {P2} suggests taking {item}.",
        f"{P1} tells {P2} about a trip to {city} {length}{how}{with_friend}; since it will be {weather}, {P2} advises packing {item}.",
    )


def moving_house(s: Scene) -> Conversation:
    city, day, movers = s.pick(V.CITIES), s.pick(V.DAYS[5:]), s.pick(V.MOVERS)
    helper = s.first()
    month = s.pick(V.MONTHS)
    turns = turn_list(
        s.say(
            1,
            f"We're finally moving to {city} in {month}!",
            f"Did I tell you? We're moving to {city} in {month}.",
        ),
        s.say(2, "Really? That's big news. Why?", "Wow! What brought that on?"),
        s.say(1, "My partner got a new job there.", "We want to be closer to family."),
        (2, "Do you need help with the move?"),
        s.say(
            1,
            f"We've booked {movers}, but {helper} is also coming to help on {day}.",
            f"{helper} offered to help on {day}, and we're using {movers}.",
        ),
        s.say(2, f"I can come on {day} too.", f"Count me in for {day} as well."),
        (1, "That would be great, thank you!"),
    )
    return s.conversation(
        turns,
        "friends",
        f"{P1} is moving to {city} in {month} using {movers}. {helper} and {P2} will help on {day}.",
        f"{P1} tells {P2} about moving to {city} in {month}; {P2} offers to help on {day} along with {helper}, and they have booked {movers}.",
    )


def study_group(s: Scene) -> Conversation:
    subject = s.pick(["maths", "chemistry", "history", "economics", "biology", "physics"])
    day, place, classmate = (
        s.pick(V.DAYS),
        s.pick(["the library", "the cafe", "my place", "the student centre"]),
        s.first(),
    )
    exam_day = s.pick(V.WEEKDAYS)
    turns = turn_list(
        s.say(
            1,
            f"Are you ready for the {subject} exam on {exam_day}?",
            f"I'm so nervous about {subject} on {exam_day}.",
        ),
        s.say(
            2,
            "Not really. I still don't understand the last chapter.",
            "Me neither, there's so much to learn.",
        ),
        s.say(
            1,
            f"Let's study together on {day} at {place}.",
            f"Why don't we meet at {place} on {day} and revise?",
        ),
        s.say(2, f"Good idea. Should we ask {classmate} too?", f"Sure. {classmate} wanted to join as well."),
        (1, "Yes, the more the better."),
    )
    return s.conversation(
        turns,
        "friends",
        f"{P1} and {P2} are worried about the {subject} exam on {exam_day}, so they will study together with {classmate} at {place} on {day}.",
        f"Before the {subject} exam on {exam_day}, {P1}, {P2} and {classmate} plan to revise at {place} on {day}.",
    )
