"""Resolving a hub id on a machine without network: one quick line saying how to use a local directory (it took a
minute of retries, issue 23 item 6), or the id's snapshot in the local hub cache."""
import re
import socket
import time

import pytest

from scorebench import models
from scorebench.cli import main


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """No connection can be opened and the hub cache is empty (the state of an offline machine)."""
    def refuse(*a, **k):
        raise OSError("Network is unreachable")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_hub_id_without_network_is_one_quick_line_saying_how_to_use_a_local_dir(no_network, capsys):
    t = time.time()
    rc = main(["run", "--task", "arith", "--limit", "1", "--model", "nobody-xyz/not-a-model", "--out", "o"])
    took = time.time() - t
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [x for x in re.split(r"[\r\n]", err) if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    # why it is offline: no network, or HF_HUB_OFFLINE set (by an earlier test in the same process)
    assert ("cannot be reached" in err or "HF_HUB_OFFLINE is set" in err) and "--model DIR" in err
    assert "hf download nobody-xyz/not-a-model" in err
    assert took < 15, took
    assert not (no_network / "o").exists()


def test_hub_id_without_network_uses_its_cached_snapshot(no_network):
    snap = no_network / "hub-cache" / "models--org--cached-model" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("a" * 40)
    assert models.resolve("org/cached-model") == str(snap)
    with pytest.raises(models.ModelError, match="nor in the local hub cache"):
        models.resolve("org/other-model")
