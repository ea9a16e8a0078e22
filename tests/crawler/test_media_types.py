"""crawler.media_types: containers recognised by their first bytes, and the one extension list."""

from crawler.extract import extract_page
from crawler.media_types import has_video_extension, sniff


def test_sniff_recognises_containers_by_their_first_bytes(media):
    assert sniff(media["bikes"].read_bytes()[:400]) == "isobmff"
    assert sniff(b"\x1a\x45\xdf\xa3" + b"\x00" * 40) == "matroska"
    assert sniff(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert sniff(b"FLV\x01\x05") == "flv"
    assert sniff((b"\x47" + b"\x00" * 187) * 3) == "mpeg-ts"
    assert sniff(b"\x00\x00\x00\x18ftypheic") is None  # a still image
    assert sniff(b"") is None
    assert sniff(b"<html><body>not a video</body></html>") is None


def test_one_extension_list_for_folders_and_links():
    assert has_video_extension("/a/B.MOV") and not has_video_extension("notes.txt")
    assert has_video_extension("x.ts") and has_video_extension("x.vob")
    page = extract_page('<a href="a.vob">a</a> <a href="b.ts">b</a> <a href="c.MKV">c</a>', "https://e.org/")
    # the same list for links, but a linked ".ts" is TypeScript far more often than MPEG-TS:
    # neither a video nor a page to follow
    assert [v.url for v in page.videos] == ["https://e.org/a.vob", "https://e.org/c.MKV"]
    assert page.links == []
