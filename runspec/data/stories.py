"""The embedded default corpus: simple, deterministic children's stories.

Why generated and not shipped: every machine has it (no download, no data files in the
repo), it is identical everywhere (a fixed seed), and it has structure a tiny model learns in
a minute on CPU — recurring names, agreement between a character and later pronouns, a
problem, a helper, a resolution and a moral — so a falling loss shows up as samples that
visibly read like the corpus.
"""

from __future__ import annotations

import random

NAMES = [
    ("Lily", "she", "her"), ("Tom", "he", "his"), ("Mia", "she", "her"), ("Ben", "he", "his"),
    ("Sara", "she", "her"), ("Max", "he", "his"), ("Anna", "she", "her"), ("Leo", "he", "his"),
    ("Zoe", "she", "her"), ("Sam", "he", "his"), ("Emma", "she", "her"), ("Jack", "he", "his"),
]
ANIMALS = ["cat", "dog", "bird", "frog", "bunny", "duck", "fox", "bear", "mouse", "owl"]
ADJECTIVES = ["little", "happy", "brave", "kind", "curious", "shy", "silly", "small", "clever"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "shiny"]
THINGS = ["ball", "kite", "hat", "boat", "book", "cup", "box", "drum", "train", "flower"]
PLACES = ["the park", "the garden", "the forest", "the beach", "the yard", "the lake", "the farm", "the hill"]
WEATHER = ["sunny", "rainy", "windy", "warm", "cold", "quiet", "bright"]
PROBLEMS = [
    ("the {thing} fell into the water", "pulled it out with a long stick"),
    ("the {thing} got stuck in a tall tree", "climbed up and got it down"),
    ("the {thing} was lost under the leaves", "looked and looked until they found it"),
    ("the {thing} broke into two pieces", "fixed it with some glue"),
    ("the wind took the {thing} away", "ran fast and caught it"),
    ("the {thing} was too heavy to carry", "carried it together"),
]
FEELINGS = ["sad", "scared", "upset", "worried"]
MORALS = [
    "It is good to help your friends.",
    "Sharing makes everyone happy.",
    "When you work together, you can do hard things.",
    "Being kind is the best thing you can do.",
    "Do not give up, even when it is hard.",
    "Friends are there for each other.",
]


def _story(rng: random.Random) -> str:
    name, subj, poss = rng.choice(NAMES)
    friend_name, friend_subj, _ = rng.choice([n for n in NAMES if n[0] != name])
    animal = rng.choice(ANIMALS)
    adj = rng.choice(ADJECTIVES)
    color = rng.choice(COLORS)
    thing = rng.choice(THINGS)
    place = rng.choice(PLACES)
    problem, fix = rng.choice(PROBLEMS)
    feeling = rng.choice(FEELINGS)
    helper = rng.choice([f"{poss} friend {friend_name}", f"a {rng.choice(ADJECTIVES)} {animal}"])
    helper_subj = friend_subj if helper.endswith(friend_name) else "it"
    cap = subj.capitalize()
    lines = [
        f"Once upon a time, there was a {adj} {'girl' if subj == 'she' else 'boy'} named {name}.",
        f"{cap} had a {color} {thing}. {cap} loved {poss} {color} {thing} very much.",
        f"One {rng.choice(WEATHER)} day, {name} went to {place} to play with the {thing}.",
        f"But then, {problem.format(thing=thing)}.",
        f"{name} was {feeling}. \"Oh no! My {thing}!\" {subj} said.",
        f"Then {helper} came to help. {helper_subj.capitalize()} said, \"Do not be {feeling}, {name}. I will help you.\"",
        f"Together they {fix}.",
        f"{name} was very happy. \"Thank you!\" {subj} said with a big smile.",
    ]
    if rng.random() < 0.5:
        lines.append(f"From that day on, {name} and {helper.split()[-1]} played at {place} every day.")
    lines.append(rng.choice(MORALS))
    return " ".join(lines)


def generate_stories(n: int = 6000, seed: int = 1234) -> list[str]:
    """``n`` stories; the same list on every machine for the same seed."""
    rng = random.Random(seed)
    return [_story(rng) for _ in range(n)]
