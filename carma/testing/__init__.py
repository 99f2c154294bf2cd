"""Property-based testing with CARMA, for CARMA's users (`pip install 'carma[testing]'`).

plugin      a pytest plugin (loaded by its `pytest11` entry point): `carma_store`, a throwaway
            store on a small deterministic embedder, and `carma_embedder`
strategies  hypothesis strategies for texts, metadata, namespaces, fragments and damage plans
damage      damage done to a store's copies as a disk or a bug would: cache files unlinked,
            cut short or flipped, the index file dropped, a stored event's bytes flipped
machine     CarmaStateMachine, a hypothesis RuleBasedStateMachine to extend with rules that
            drive your own agent code, while the store is damaged, healed and reopened

Everything here is a client of CARMA's public API and of the documented layout of a home.
"""

from __future__ import annotations

from carma.testing.damage import DAMAGE_KINDS, Damage, Damaged, apply_damage, damage

__all__ = ["DAMAGE_KINDS", "Damage", "Damaged", "apply_damage", "damage", "small_embedder"]


def small_embedder(dimension: int = 32):
    """The deterministic embedder the kit's stores use: hashed words, no model, no download,
    the same vectors on every machine."""
    import carma

    return carma.HashingEmbedder(dimension=dimension)
