"""CarmaStateMachine: a hypothesis state machine over a throwaway CARMA store, to extend with
rules that drive your own agent code while the store is damaged, healed and reopened.

    class MyAgentMachine(CarmaStateMachine):
        @rule(text=strategies.texts())
        def remember(self, text):
            my_agent.remember(self.memory, text)

    TestMyAgent = MyAgentMachine.TestCase

Its own rules damage the store (a damage plan), run a dream cycle and reopen the store; its
invariant checks CARMA's promise that reads go on through damage: every live fragment reads
back, its text exact or labelled (approximate, with its fidelity; lost, with none).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import carma
from carma.testing import small_embedder
from carma.testing.damage import Damage, Damaged, apply_damage
from carma.testing.strategies import damage_plans


class CarmaStateMachine(RuleBasedStateMachine):
    """`self.memory`: the store, opened in a fresh folder for each run (`self.home`)."""

    def __init__(self) -> None:
        super().__init__()
        self._folder = tempfile.TemporaryDirectory(prefix="carma-machine-")
        self.home = Path(self._folder.name) / "home"
        self.embedder = self.make_embedder()
        self.memory: carma.Memory = self.open_store(self.home)

    # -- what a subclass may change ----------------------------------------------------------

    def make_embedder(self) -> carma.Embedder:
        return small_embedder()

    def open_store(self, home: Path) -> carma.Memory:
        return carma.open(home, embedder=self.embedder)

    def damage_targets(self) -> list[str]:
        """The fragment ids a damage chooses from (default: every live one, oldest first)."""
        return [record.id for record in self.memory.export()]

    def flip_event(self, memory: carma.Memory, key: str, pick: int) -> bool:
        """How a stored event is damaged (default: in the home's SQLite log)."""
        from carma.testing.damage import flip_stored_body

        return flip_stored_body(memory, key, pick)

    def after_damage(self, done: list[Damaged]) -> None:
        """Told what a damage plan did, to keep a model of the store in step."""

    def after_dream(self, report: dict[str, Any]) -> None:
        """Told what a dream cycle did."""

    # -- rules -------------------------------------------------------------------------------

    @rule(plan=damage_plans())
    def damage(self, plan: list[Damage]) -> None:
        done = apply_damage(self.memory, plan, self.damage_targets(), flip_event=self.flip_event)
        self.after_damage(done)

    @rule()
    def dream(self) -> None:
        self.after_dream(self.memory.dream())

    @rule()
    def reopen(self) -> None:
        self.reopen_store()

    def reopen_store(self) -> None:
        """Close the store and open it again, as a restarted process would."""
        self.memory.close()
        self.memory = self.open_store(self.home)

    # -- the promise -------------------------------------------------------------------------

    @invariant()
    def every_live_fragment_reads_back_labelled(self) -> None:
        for record in self.memory.export():
            if record.status == "healthy":
                assert record.text is not None and record.fidelity == 1.0
            elif record.status == "approximate":
                assert record.text and 0.0 <= record.fidelity < 1.0 + 1e-9
            else:
                assert record.status == "lost" and record.text is None

    def teardown(self) -> None:
        try:
            self.memory.close()
        finally:
            self._folder.cleanup()
