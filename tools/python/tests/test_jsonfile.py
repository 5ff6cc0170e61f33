"""hndd_client.jsonfile.read_json_file and the two loaders built on it."""
import pytest

from hndd_client.cluster import ClusterError, load_cluster
from hndd_client.curve import CredentialError, load_credential
from hndd_client.jsonfile import read_json_file


class Oops(Exception):
    pass


def test_reads_json(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"x": [1, 2]}')
    assert read_json_file(str(path), "thing", Oops) == {"x": [1, 2]}


def test_missing_file_names_path_and_what(tmp_path):
    path = str(tmp_path / "missing.json")
    with pytest.raises(Oops, match=rf"^{path}: cannot read the thing: No such file or directory$"):
        read_json_file(path, "thing", Oops)


def test_malformed_json_names_path_and_hint(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(Oops, match=rf"^{path}: not JSON \(hint\): Expecting property name"):
        read_json_file(str(path), "thing", Oops, " (hint)")


@pytest.mark.parametrize("load, error, what, hint", [
    (load_cluster, ClusterError, "cluster file", ""),
    (load_credential, CredentialError, "credential file", r" \(an hndd credential file is JSON\)"),
])
def test_loaders_share_the_messages(tmp_path, load, error, what, hint):
    missing = tmp_path / "missing.json"
    with pytest.raises(error, match=rf"^{missing}: cannot read the {what}: No such file"):
        load(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("[1,")
    with pytest.raises(error, match=rf"^{bad}: not JSON{hint}: "):
        load(bad)
