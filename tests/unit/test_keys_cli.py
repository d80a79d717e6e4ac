"""`driftline keys create`: a key pair that signs and verifies, the private half owner-only (no Kafka)."""

from __future__ import annotations

import stat

from driftline import artifacts
from driftline.cli.main import main
from driftline.settings import Settings


def test_keys_create_writes_a_pair_that_signs_and_verifies(tmp_path, capsys):
    assert main(["keys", "create", str(tmp_path / "keys")]) == 0
    private, public = tmp_path / "keys" / "signing.pem", tmp_path / "keys" / "verify.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    artifact, sha = artifacts.pack([1, 2])
    record = artifacts.sign({"model": "m", "version": "1", "flavor": artifacts.FLAVOR, "compression": "zlib",
                             "artifact": artifact, "artifact_sha256": sha}, Settings(signing_key_file=str(private)))
    assert artifacts.load(record, Settings(verify_key_file=str(public))) == [1, 2]
    assert "DRIFTLINE_VERIFY_KEY_FILE=" in capsys.readouterr().out


def test_keys_create_does_not_overwrite_a_key_without_force(tmp_path, capsys):
    assert main(["keys", "create", str(tmp_path)]) == 0
    before = (tmp_path / "signing.pem").read_bytes()
    capsys.readouterr()
    assert main(["keys", "create", str(tmp_path)]) == 2
    assert "already holds a key" in capsys.readouterr().err
    assert (tmp_path / "signing.pem").read_bytes() == before
    assert main(["keys", "create", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "signing.pem").read_bytes() != before
