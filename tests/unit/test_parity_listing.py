"""The parity rule for listing links: only the links' encoding may differ."""

from conformance.parity import same_listing_but_hrefs

OURS = b'<a href="./sp%20ace.txt">sp ace.txt</a> <a href="./%C3%BCn%C3%AF.txt">\xc3\xbc</a>'
THEIRS = '<a href="./sp ace.txt">sp ace.txt</a> <a href="./ünï.txt">ü</a>'.encode()


def test_percent_encoded_links_to_the_same_names_are_the_same_page():
    assert same_listing_but_hrefs(OURS, THEIRS)


def test_a_link_to_another_name_or_other_text_is_a_difference():
    assert not same_listing_but_hrefs(OURS.replace(b"%20", b"%21"), THEIRS)
    assert not same_listing_but_hrefs(OURS.replace(b">sp ace", b">sp_ace"), THEIRS)
    assert not same_listing_but_hrefs(OURS + b'<a href="./x">x</a>', THEIRS)
