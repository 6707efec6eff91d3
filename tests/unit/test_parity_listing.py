"""The parity rule for listing links: only the links' encoding may differ."""

import pytest

from conformance.parity import same_listing_but_hrefs, same_listing_but_title

OURS = b'<a href="./sp%20ace.txt">sp ace.txt</a> <a href="./%C3%BCn%C3%AF.txt">\xc3\xbc</a>'
THEIRS = '<a href="./sp ace.txt">sp ace.txt</a> <a href="./ünï.txt">ü</a>'.encode()


def test_percent_encoded_links_to_the_same_names_are_the_same_page():
    assert same_listing_but_hrefs(OURS, THEIRS)


def test_a_link_to_another_name_or_other_text_is_a_difference():
    assert not same_listing_but_hrefs(OURS.replace(b"%20", b"%21"), THEIRS)
    assert not same_listing_but_hrefs(OURS.replace(b">sp ace", b">sp_ace"), THEIRS)
    assert not same_listing_but_hrefs(OURS + b'<a href="./x">x</a>', THEIRS)


# --- the checkpoint listing's title: theirs blank, ours the path, nothing else

def _listing(title: bytes, heading: bytes | None = None, rest: bytes = b"") -> bytes:
    head = b"" if heading is None else b"<h1>Index of " + heading + b"</h1>"
    return (b"<html><head><title>Index of " + title + b"</title></head><body>" + head
            + b'<a href="./20261129T114428Z/">x</a>' + rest + b"</body></html>")


def test_their_blank_title_against_our_path_is_the_same_page():
    assert same_listing_but_title(_listing(b"/p/ckpt/", b"/p/ckpt/"), _listing(b"", b""))


@pytest.mark.parametrize(("ours", "theirs"), [
    # theirs names a path too: not the old app's blank title, whatever ours says
    (_listing(b"/p/ckpt/", b"/p/ckpt/"), _listing(b"/q/", b"/q/")),
    (_listing(b"", b""), _listing(b"/q/", b"/q/")),
    # theirs has a blank heading but no title line of that shape: not that page
    (_listing(b"/p/", b"/p/").replace(b"<title>Index of /p/</title>", b""),
     _listing(b"", b"").replace(b"<title>Index of </title>", b"")),
    (_listing(b"/p/", b"/p/", b"<i>more</i>"), _listing(b"", b"")),  # another difference
    (_listing(b"", b""), _listing(b"", b"")),  # the same page is no difference
])
def test_any_other_listing_difference_is_not_the_title(ours: bytes, theirs: bytes):
    assert not same_listing_but_title(ours, theirs)
