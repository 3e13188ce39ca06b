"""The story generator: one story from one ``random.Random``, and a corpus of them written to a file.

The project cannot ship TinyStories, so it writes a corpus in the same shape: plain English stories, each
followed by a line ``<|endoftext|>``. A story casts a hero, a friend and a grown-up (children, animals, people
with jobs; ``words``), picks a place, a thing, the weather and the events of one of twelve plots
(``plots``: lost things, new friends, fears, sharing, storms, rescues, contests, …), and renders one
alternative per stage with ``str.format_map``. Everything is drawn from one ``random.Random(seed)``, so a seed
and a size give the same bytes on every run, and a shorter corpus is a prefix of a longer one with its seed.

>>> story = next(iter_stories(seed=0))
>>> story.count(".") > 5
True
"""

import random
import re
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from cs336_lm.fileio import atomic_write
from cs336_lm.tinytales import plots, words

EOT = "<|endoftext|>"
GENERATOR_VERSION = 1

# Fields drawn afresh at every use in a template (see plots.py): key -> table.
_FRESH = {
    "r_adj": words.OBJ_ADJ,
    "r_move": words.MOVES,
    "r_adv": words.ADVERBS,
    "r_say": words.SAY,
    "r_ex": words.EXCLAIM,
    "r_good": words.GOOD_FEELINGS,
    "r_bad": words.BAD_FEELINGS,
    "r_color": words.COLORS,
    "r_flower": words.FLOWERS,
    "r_bird": words.BIRDS,
    "r_bug": words.BUGS,
    "r_tree": words.TREES,
    "r_food": words.FOODS,
    "r_sound": words.SOUNDS,
    "r_scene": words.SCENES,
    "r_vehicle": words.VEHICLES,
}

_HE = {"he": ("he", "his", "him", "himself"), "she": ("she", "her", "her", "herself")}
_FAMILY_SHE = {"Mom", "Grandma", "Nana", "Granny", "Aunt May", "Aunt Rosa"}


def an(phrase: str) -> str:
    """Prefix the indefinite article: ``an("owl") == "an owl"``, ``an("kite") == "a kite"``."""
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


class StoryFields(dict):
    """Template fields of one story; a missing ``r_…`` key is drawn afresh from its table at every use.

    Characters met in the middle of a story are introduced on first mention: the first ``{F}`` renders as
    "a shy fox named Pip" (and the first ``{A}`` as "Mr. Finch the baker"), later ones as the bare name.
    """

    def __init__(self, rng: random.Random, first_mentions: dict[str, tuple[str, str, str]], **fields: str):
        super().__init__(**fields)
        self.rng = rng
        self.first_mentions = first_mentions  # role -> (name, short introduction, long introduction)

    def __missing__(self, key: str) -> str:
        role, _, suffix = key.partition("_")
        if role in self.first_mentions:
            name, short, long = self.first_mentions.pop(role)
            self[role] = self[key] = name
            return long if suffix == "intro" else short
        if key.endswith("_intro"):  # the role was already introduced
            return self[role]
        return self.rng.choice(_FRESH[key])


def _pronouns(prefix: str, gender: str) -> dict[str, str]:
    """Pronoun fields for a role: ``_pronouns("f", "she")`` -> ``{"fhe": "she", "fHe": "She", "fhis": "her", …}``."""
    he, his, him, self_ = _HE[gender]
    return {
        f"{prefix}he": he,
        f"{prefix}He": he.capitalize(),
        f"{prefix}his": his,
        f"{prefix}His": his.capitalize(),
        f"{prefix}him": him,
        f"{prefix}himself": self_,
    }


def _character(rng: random.Random, avoid: str = "") -> dict[str, str]:
    """A child or an animal: name, gender, kind ("girl", "fox"), trait and an introduction phrase."""
    gender = rng.choice(("he", "she"))
    trait = rng.choice(words.TRAITS)
    if rng.random() < 0.55:
        kind = "girl" if gender == "she" else "boy"
        names = words.GIRL_NAMES if gender == "she" else words.BOY_NAMES
    else:
        kind, names = rng.choice(words.ANIMALS), words.PET_NAMES
    name = rng.choice(names)
    while name == avoid:
        name = rng.choice(names)
    size = rng.choice(("little ", "", "young ", "small ", "")) if trait not in ("little", "small", "tiny") else ""
    short = an(f"{trait} {size}{kind}")
    intro = f"{short} {rng.choice(('named', 'called', 'named'))} {name}"
    return {"name": name, "gender": gender, "kind": kind, "trait": trait, "intro": intro, "short": short}


def _first_mention(role: dict[str, str]) -> tuple[str, str, str]:
    """(name, short introduction, long introduction) of a role introduced mid-story."""
    return role["name"], role.get("first", role["intro"]), role["intro"]


def _grownup(rng: random.Random) -> dict[str, str]:
    """A family member ("Grandma") or a neighbor with a job ("Mr. Finch, the baker, who baked …")."""
    if rng.random() < 0.5:
        name = rng.choice(words.ADULTS)
        return {"name": name, "gender": "she" if name in _FAMILY_SHE else "he", "intro": name, "first": name}
    job, does, _ = rng.choice(words.PROFESSIONS)
    gender = rng.choice(("he", "she"))
    title = "Mr." if gender == "he" else rng.choice(("Mrs.", "Miss", "Ms."))
    name = f"{title} {rng.choice(words.SURNAMES)}"
    return {"name": name, "gender": gender, "intro": f"{name}, the {job} who {does}", "first": f"{name} the {job}"}


def story_fields(rng: random.Random) -> StoryFields:
    """Cast and setting of one story: every fixed template field, chosen once."""
    hero = _character(rng)
    friend = _character(rng, avoid=hero["name"])
    adult = _grownup(rng)
    place, detail = rng.choice(words.PLACES)
    obj = f"{rng.choice(words.OBJ_ADJ)} {rng.choice(words.OBJECTS)}"
    fields = StoryFields(
        rng,
        {"F": _first_mention(friend), "A": _first_mention(adult)},
        H=hero["name"], H_intro=hero["intro"], H_intro_short=hero["short"], htrait=hero["trait"],
        fkind=friend["kind"], a_clothes=an(rng.choice(words.CLOTHES)), dream=rng.choice(words.DREAMS),
        vehicle=rng.choice(words.VEHICLES),
        opener=rng.choice(words.OPENERS), home=rng.choice(words.HOMES), time=rng.choice(words.TIMES),
        weather=rng.choice(words.WEATHER), place=place, place_detail=detail,
        obj=obj, a_obj=an(obj), food=rng.choice(words.FOODS), activity=rng.choice(words.ACTIVITIES),
        color=rng.choice(words.COLORS), tree=rng.choice(words.TREES), sound=rng.choice(words.SOUNDS),
        good=rng.choice(words.GOOD_FEELINGS), bad=rng.choice(words.BAD_FEELINGS),
        hide=rng.choice(words.HIDING_SPOTS), obstacle=rng.choice(words.OBSTACLES),
        obstacle2=rng.choice(words.OBSTACLES), pet_kind=rng.choice(words.ANIMALS),
    )  # fmt: skip
    fields.update(_plot_fields(rng))
    fields.update(_pronouns("", hero["gender"]))
    fields.update(_pronouns("f", friend["gender"]))
    fields.update(_pronouns("a", adult["gender"]))
    return fields


def _plot_fields(rng: random.Random) -> dict[str, str]:
    """The plot-specific things of a story: the event, the fear, the skill, the animal in trouble, …"""
    event, event_detail = rng.choice(words.EVENTS)
    fear, fear_act = rng.choice(words.FEARS)
    skill, skill_fail, skill_win = rng.choice(words.SKILLS)
    rescue, trouble, fix = rng.choice(words.RESCUES)
    make, mishap = rng.choice(words.MAKINGS)
    broken, break_how = rng.choice(words.BREAKABLES)
    quest, quest_where = rng.choice(words.QUESTS)
    return {
        "event": event, "event_detail": event_detail, "fear": fear, "fear_act": fear_act,
        "skill": skill, "skill_fail": skill_fail, "skill_win": skill_win,
        "rescue": rescue, "rescue_trouble": trouble, "rescue_fix": fix, "make": make, "make_mishap": mishap,
        "broken": broken, "break_how": break_how, "quest": quest, "quest_where": quest_where,
    }  # fmt: skip


_SENTENCE_START = re.compile(r'(^|[.!?] "?|^")([a-z])')


def _sentence_case(text: str) -> str:
    """Capitalize sentence starts: ``'a fox came. "a hat!" she said.'`` -> ``'A fox came. "A hat!" she said.'``"""
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def generate_story(rng: random.Random) -> str:
    """One story of three paragraphs — beginning (cast, setting), problem (with attempts), ending.

    The plot is one of ``plots.PLOTS``; each of its stages contributes one alternative (the middle
    one or two, in order), wrapped in a shared opening and closing and the odd digression.
    """
    f = story_fields(rng)
    plot = rng.choice(plots.PLOTS)
    first = [rng.choice(plots.INTROS)]
    first += rng.sample(plots.INTRO_EXTRAS, rng.choice((0, 1, 1, 2)))
    first.append(rng.choice(plot["setup"]))
    middle_count = min(len(plot["middle"]), rng.choice((1, 2, 2, 3)))
    middles = sorted(rng.sample(range(len(plot["middle"])), middle_count))
    second = [rng.choice(plot["problem"]), *(plot["middle"][i] for i in middles)]
    if rng.random() < 0.3:
        second.insert(1, rng.choice(plots.DIGRESSIONS))
    third = [rng.choice(plot["resolve"]), rng.choice(plots.CLOSINGS)]
    if rng.random() < 0.45:
        third.append(rng.choice(plot["moral"]) if rng.random() < 0.8 else rng.choice(words.MORALS))
    paragraphs = (" ".join(part.format_map(f) for part in para) for para in (first, second, third))
    return "\n".join(_sentence_case(p) for p in paragraphs)


def iter_stories(seed: int | str = 0) -> Iterator[str]:
    """An endless, deterministic stream of stories for ``seed`` (an int or a string)."""
    rng = random.Random(seed)
    while True:
        yield generate_story(rng)


def iter_documents(size_bytes: int, seed: int | str = 0) -> Iterator[str]:
    """Stories formatted as corpus documents (``story + "\\n<|endoftext|>\\n"``) until ``size_bytes`` is reached.

    The last document is the one that crosses the size, so the total is at least ``size_bytes`` (and at most one
    story more); a size of 0 yields nothing.
    """
    written = 0
    stories = iter_stories(seed)
    while written < size_bytes:
        doc = f"{next(stories)}\n{EOT}\n"
        written += len(doc.encode("utf-8"))
        yield doc


def write_corpus(path: str | Path, size_bytes: int, seed: int | str = 0, progress: bool = True) -> dict:
    """Write a corpus of at least ``size_bytes`` UTF-8 bytes to ``path`` atomically; return its statistics.

    Returns ``{"bytes": …, "stories": …, "seed": …}``.
    """
    stats: dict = {"bytes": 0, "stories": 0, "seed": seed}
    with (
        atomic_write(path, "w", encoding="utf-8", newline="\n") as out,
        tqdm(total=size_bytes, unit="B", unit_scale=True, desc=Path(path).name, disable=not progress) as bar,
    ):
        for doc in iter_documents(size_bytes, seed):
            n = len(doc.encode("utf-8"))
            out.write(doc)
            stats["bytes"] += n
            stats["stories"] += 1
            bar.update(min(n, size_bytes - bar.n))
    return stats


def split_documents(text: str) -> list[str]:
    """The stories of a corpus text, without separators: the inverse of ``iter_documents``."""
    return [doc.strip("\n") for doc in text.split(f"\n{EOT}\n") if doc.strip()]
