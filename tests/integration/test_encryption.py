"""Encryption at rest: the log is written with the library's AES-GCM cipher when a key is set."""

import base64
import os

import pytest
from click.testing import CliRunner

import carma
from carma.cli import cli
from tests.conftest import log_length, stored_bytes

SECRET = "the secret recipe calls for cardamom and smoked salt"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_an_encrypted_log_holds_no_plaintext_and_reads_back_with_its_key(home, embedder):
    key = new_key()
    with carma.open(home, embedder=embedder, cipher_key=key) as mem:
        fragment = mem.add(SECRET, {"owner": "chef"})
        mem.revise(fragment, text=SECRET + ", and a pinch of sumac")
    raw = stored_bytes(home)
    assert b"cardamom" not in raw and b"chef" not in raw
    with carma.open(home, embedder=embedder, cipher_key=key) as mem:
        assert mem.get(fragment).text.endswith("a pinch of sumac")
        assert mem.search("recipe with cardamom", k=1)[0].id == fragment
        assert mem.verify()["ok"]
        mem.rebuild()
        assert mem.get(fragment).metadata == {"owner": "chef"}
        with mem.replay(into=home.parent / "replica") as replica:  # with the same key
            assert replica.get(fragment).text == mem.get(fragment).text


@pytest.mark.parametrize(
    "other, message",
    [
        (None, "it is encrypted and CARMA_CIPHER_KEY is not set"),
        ("wrong", "the key is wrong, or the store is not encrypted"),
    ],
)
def test_a_missing_or_wrong_key_is_a_clear_error_and_changes_nothing(
    home, embedder, other, message
):
    with carma.open(home, embedder=embedder, cipher_key=new_key()) as mem:
        mem.add(SECRET)
    before = log_length(home)
    with pytest.raises(carma.InvalidInput, match=message):
        carma.open(home, embedder=embedder, cipher_key=new_key() if other else None)
    assert log_length(home) == before


def test_a_key_for_a_store_that_is_not_encrypted_is_refused(home, embedder):
    with carma.open(home, embedder=embedder) as mem:
        mem.add(SECRET)
    with pytest.raises(carma.InvalidInput, match="not encrypted"):
        carma.open(home, embedder=embedder, cipher_key=new_key())


def test_a_malformed_key_is_refused(home, embedder):
    with pytest.raises(carma.InvalidInput, match="base64 of 16, 24 or 32"):
        carma.open(home, embedder=embedder, cipher_key="not a key")


def test_the_cli_takes_the_key_from_the_environment(tmp_path):
    home = str(tmp_path / "home")
    runner = CliRunner()
    key = new_key()
    added = runner.invoke(
        cli, ["add", SECRET, "--home", home, "--embedder", "hashing"], env={"CARMA_CIPHER_KEY": key}
    )
    assert added.exit_code == 0
    got = runner.invoke(
        cli, ["get", added.stdout.strip(), "--home", home], env={"CARMA_CIPHER_KEY": key}
    )
    assert got.exit_code == 0 and SECRET in got.stdout
    wrong = runner.invoke(
        cli, ["get", added.stdout.strip(), "--home", home], env={"CARMA_CIPHER_KEY": new_key()}
    )
    assert wrong.exit_code == 2 and wrong.stderr.count("\n") == 1
    assert "the key is wrong" in wrong.stderr and key not in wrong.stderr
