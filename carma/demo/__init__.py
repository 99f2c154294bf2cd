"""The demo and the damage it shows healed: clients of the public API.

tour    `carma demo`: a store built from real sentences, searched, damaged and healed
chaos   `carma chaos`: real damage on disk while threads keep querying
corpus  real sentences every Python install has (the standard library's docstrings)
"""

from carma.demo.chaos import chaos_text, damage_store, destroy_bodies, run_chaos
from carma.demo.corpus import corpus, varied
from carma.demo.tour import run_demo

__all__ = [
    "chaos_text",
    "corpus",
    "damage_store",
    "destroy_bodies",
    "run_chaos",
    "run_demo",
    "varied",
]
