"""Video ids as a user types them: ``search`` prints 16 characters; every command takes any unique prefix."""

import json

import pytest

from processing.catalogue import SqliteCatalogue
from processing.cli import main
from tests.processing.catalogue.corpus import make_doc, unit


def doc(video_id, title, **fields):
    d = make_doc(title.lower(), title, **fields)
    d["video_id"] = d["sha256"] = video_id
    return d


A = "abcd1234" + "0" * 56
B = "abcd5678" + "1" * 56  # shares "abcd" with A
C = "ffee" + "2" * 60


@pytest.fixture
def catalogue(data_dir):
    with SqliteCatalogue() as cat:  # the catalogue file the commands open (settings.CATALOGUE_PATH)
        cat.upsert([doc(A, "Dog", vector=unit(1, 0)), doc(B, "Puppy", vector=unit(0.9, 0.4)),
                    doc(C, "Dog copy", status="duplicate", duplicate_of=A, similarity=0.97, vector=unit(1, 0.05))])
    return data_dir


def cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_search_prints_16_characters_and_every_command_takes_them(catalogue, capsys):
    code, out, _ = cli(capsys, "search", "--no-semantic")
    assert code == 0 and A[:16] in out and A not in out
    code, out, _ = cli(capsys, "duplicates", A[:16])
    assert code == 0 and f"canonical {A}" in out and f"copy {C}" in out
    code, out, _ = cli(capsys, "duplicates", C[:6], "--json")  # a copy's prefix: its cluster
    assert code == 0 and json.loads(out)["canonical"]["video_id"] == A
    code, out, _ = cli(capsys, "search", "--similar", A[:16], "--json", "--no-semantic")
    assert code == 0 and [h["video_id"] for h in json.loads(out)["hits"]] == [B]
    code, out, _ = cli(capsys, "search", "--similar", A.upper()[:10], "--json", "--no-semantic")
    assert code == 0 and json.loads(out)["similar_to"] == A


def test_an_ambiguous_or_unknown_prefix_says_so_in_one_sentence(catalogue, capsys):
    code, _, err = cli(capsys, "duplicates", "abcd")
    assert code == 1 and err.strip() == "error: 'abcd' is ambiguous: 2 videos start with it; give more characters"
    code, _, err = cli(capsys, "search", "--similar", "abcd")
    assert code == 1 and "ambiguous: 2 videos" in err
    code, _, err = cli(capsys, "duplicates", "0123456789abcdef")
    assert code == 1 and err.strip() == "error: no video '0123456789abcdef' in the catalogue"
    code, _, err = cli(capsys, "duplicates", "ab")
    assert code == 1 and "(give at least 4 characters)" in err
    code, _, err = cli(capsys, "forget", "--video-id", "abcd", "--dry-run")
    assert code == 1 and "ambiguous: 2 videos" in err


def test_forget_takes_a_prefix_and_a_dry_run_changes_nothing(catalogue, capsys, redis_url, key_prefix):
    code, out, _ = cli(capsys, "forget", "--video-id", B[:12], "--dry-run")
    assert code == 0 and out.splitlines()[:2] == ["would forget 1 video(s):", f"  {B[:16]}  indexed  Puppy  "
                                                  f"https://videos.example.org/puppy.mp4"]  # fmt: skip
    with SqliteCatalogue() as cat:
        assert cat.get(B) is not None
    code, out, _ = cli(capsys, "forget", "--video-id", B[:12])
    assert code == 0 and out.startswith("forgot 1 video(s):") and "2 new tombstone(s)" in out  # its id and URL
    with SqliteCatalogue() as cat:
        assert cat.get(B) is None and cat.get(A) is not None
