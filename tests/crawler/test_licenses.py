"""crawler/licenses.py: real-world licence strings to SPDX ids, and the ``--license`` rule."""

import pytest

from crawler.licenses import ALL_IDS, check_query, ids_matching, matches, normalize

# (raw value as a source gives it, id). Sources: page links and <meta>, JSON-LD, yt-dlp's
# extractors (YouTube, Vimeo, PeerTube, Mixcloud...), Internet Archive licenseurl, Commons
# extmetadata (LicenseShortName, LicenseUrl, License), Flickr, RSS media:license.
CASES = [
    # Creative Commons URLs: http/https, www, no scheme, trailing parts, legalcode, deeds, ports
    ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
    ("http://creativecommons.org/licenses/by/4.0", "CC-BY-4.0"),
    ("https://www.creativecommons.org/licenses/by/4.0/legalcode", "CC-BY-4.0"),
    ("https://creativecommons.org/licenses/by/4.0/deed.fr", "CC-BY-4.0"),
    ("//creativecommons.org/licenses/by-sa/4.0/", "CC-BY-SA-4.0"),
    ("creativecommons.org/licenses/by-sa/3.0/deed.en_US", "CC-BY-SA-3.0"),
    ("http://creativecommons.org/licenses/by-sa/3.0/de/", "CC-BY-SA-3.0"),
    ("https://creativecommons.org/licenses/by-nc/2.5/", "CC-BY-NC-2.5"),
    ("http://creativecommons.org/licenses/by-nc-sa/3.0/", "CC-BY-NC-SA-3.0"),
    ("https://creativecommons.org/licenses/by-nc-nd/3.0/", "CC-BY-NC-ND-3.0"),
    ("http://creativecommons.org/licenses/by-nd-nc/1.0/", "CC-BY-NC-ND-1.0"),  # the 1.0 URL order
    ("http://creativecommons.org/licenses/by-nd/2.0/legalcode", "CC-BY-ND-2.0"),
    ("https://creativecommons.org/licenses/by-nc-sa/2.0/fr/deed.en", "CC-BY-NC-SA-2.0"),
    ("HTTPS://CreativeCommons.org/Licenses/BY/4.0/", "CC-BY-4.0"),
    ("https://creativecommons.org/licenses/by/", "CC-BY"),
    ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
    ("http://creativecommons.org/publicdomain/zero/1.0/deed.en", "CC0-1.0"),
    ("https://creativecommons.org/publicdomain/zero/1.0/legalcode", "CC0-1.0"),
    ("http://creativecommons.org/publicdomain/mark/1.0/", "public-domain"),
    ("https://creativecommons.org/publicdomain/mark/1.0/deed.de", "public-domain"),
    ("http://creativecommons.org/licenses/publicdomain/", "public-domain"),  # yt-dlp test value
    ("https://creativecommons.org/licenses/sampling+/1.0/", "unknown"),
    ("https://creativecommons.org/licenses/GPL/2.0/", "unknown"),
    ("https://creativecommons.org/licenses/nc-sa/1.0/", "unknown"),  # 1.0 without BY: no SPDX id
    ("https://creativecommons.org/licenses/by/5.0/", "CC-BY"),  # no such version: the family
    ("https://creativecommons.org/", "unknown"),
    # names: Commons LicenseShortName, the deeds' titles, SPDX ids, Commons' License field
    ("CC BY-SA 3.0", "CC-BY-SA-3.0"),
    ("CC BY 2.0", "CC-BY-2.0"),
    ("CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("CC BY-SA 3.0 DE", "CC-BY-SA-3.0"),
    ("CC BY 3.0 IGO", "CC-BY-3.0"),
    ("CC BY-NC-ND 4.0", "CC-BY-NC-ND-4.0"),
    ("cc-by-sa-4.0", "CC-BY-SA-4.0"),
    ("cc-by-sa-3.0,2.5,2.0,1.0", "CC-BY-SA-3.0"),
    ("CC-BY-4.0", "CC-BY-4.0"),
    ("CC-BY-NC-SA-2.5", "CC-BY-NC-SA-2.5"),
    ("cc by 4", "CC-BY-4.0"),
    ("Attribution 4.0 International", "CC-BY-4.0"),
    ("Attribution-ShareAlike 4.0 International", "CC-BY-SA-4.0"),
    ("Attribution-ShareAlike 3.0 Unported", "CC-BY-SA-3.0"),
    ("Attribution-NonCommercial-NoDerivs 2.0 Generic", "CC-BY-NC-ND-2.0"),
    ("Attribution-NonCommercial-NoDerivatives 4.0 International", "CC-BY-NC-ND-4.0"),
    ("Attribution-NonCommercial-ShareAlike 4.0 International (CC BY-NC-SA 4.0)", "CC-BY-NC-SA-4.0"),
    ("Creative Commons Attribution 4.0 International License", "CC-BY-4.0"),
    ("Creative Commons Attribution-Share Alike 3.0", "CC-BY-SA-3.0"),
    ("Creative Commons Attribution-NoDerivs 3.0 Unported License", "CC-BY-ND-3.0"),
    ("This work is licensed under a Creative Commons Attribution 4.0 International License.", "CC-BY-4.0"),
    ("spdx.org/licenses/CC-BY-SA-4.0.html", "CC-BY-SA-4.0"),
    ("https://spdx.org/licenses/CC0-1.0", "CC0-1.0"),
    # yt-dlp's license strings (YouTube, Vimeo codes, PeerTube labels, Mixcloud...)
    ("Creative Commons Attribution license (reuse allowed)", "CC-BY-3.0"),
    ("Standard YouTube License", "unknown"),
    ("by", "CC-BY"),
    ("by-sa", "CC-BY-SA"),
    ("by-nc", "CC-BY-NC"),
    ("by-nc-nd", "CC-BY-NC-ND"),
    ("cc-by-nc-sa", "CC-BY-NC-SA"),
    ("attribution-cc", "CC-BY"),
    ("Creative Commons Attribution 3.0", "CC-BY-3.0"),
    ("Creative Commons Attribution Non-Commercial No Derivatives", "CC-BY-NC-ND"),
    ("Creative Commons Attribution Share Alike", "CC-BY-SA"),
    ("Attribution-ShareAlike", "CC-BY-SA"),
    ("Attribution - Share Alike", "CC-BY-SA"),
    ("Attribution - Non Commercial", "CC-BY-NC"),
    ("Attribution - Non Commercial - No Derivatives", "CC-BY-NC-ND"),
    ("all-rights-reserved", "unknown"),
    ("Unknown", "unknown"),
    ("None", "unknown"),
    ("-", "unknown"),
    ("PRIVATE", "unknown"),
    ("Copyrighted (contact publisher)", "unknown"),
    ("Standard License", "unknown"),
    # CC0 and public domain, as Commons, Flickr, the Internet Archive, PeerTube say them
    ("CC0", "CC0-1.0"),
    ("CC0 1.0 Universal", "CC0-1.0"),
    ("CC0 1.0 Universal Public Domain Dedication", "CC0-1.0"),
    ("cc-zero", "CC0-1.0"),
    ("CC-0", "CC0-1.0"),
    ("Creative Commons Zero", "CC0-1.0"),
    ("Public domain", "public-domain"),
    ("Public Domain Mark 1.0", "public-domain"),
    ("PD", "public-domain"),
    ("pd", "public-domain"),
    ("PD-US", "public-domain"),
    ("PD-USGov-NASA", "public-domain"),
    ("No known copyright restrictions", "public-domain"),
    ("No Known Copyright Restrictions", "public-domain"),
    ("United States Government Work", "public-domain"),
    ("Public Domain Dedication", "public-domain"),
    ("http://rightsstatements.org/vocab/NKC/1.0/", "public-domain"),
    ("http://rightsstatements.org/vocab/InC/1.0/", "unknown"),
    # not licences, or not Creative Commons
    ("GFDL", "unknown"),
    ("MIT", "unknown"),
    ("https://www.gnu.org/licenses/fdl-1.3.html", "unknown"),
    ("https://example.com/terms", "unknown"),
    ("Attribution required", "unknown"),
    ("Uploaded by me", "unknown"),
    ("CC BY-SA-ND 4.0", "unknown"),  # SA and ND contradict
    ("", "unknown"),
    ("   ", "unknown"),
    (None, "unknown"),
    # JSON-LD license values: a URL, a CreativeWork, an @id, a list
    ({"@type": "CreativeWork", "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"},
     "CC-BY-4.0"),
    ({"@id": "https://creativecommons.org/licenses/by-nc/4.0/"}, "CC-BY-NC-4.0"),
    ({"name": "Attribution-ShareAlike 4.0 International"}, "CC-BY-SA-4.0"),
    ({"@type": "CreativeWork", "name": "All rights reserved"}, "unknown"),
    (["https://example.com/terms", "https://creativecommons.org/publicdomain/zero/1.0/"], "CC0-1.0"),
    ([], "unknown"),
]


@pytest.mark.parametrize("raw, expected", CASES, ids=[repr(c[0])[:60] for c in CASES])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_every_result_is_a_known_id():
    assert {normalize(raw) for raw, _ in CASES} <= set(ALL_IDS)


# (id, query, matches?)
MATCHES = [
    ("CC-BY-4.0", "cc-by", True),
    ("CC-BY-2.5", "CC-BY", True),
    ("CC-BY", "cc-by", True),
    ("CC-BY-SA-4.0", "cc-by", False),
    ("CC-BY-NC-4.0", "cc-by", False),
    ("CC-BY-ND-4.0", "cc-by", False),
    ("CC-BY-NC-SA-4.0", "cc-by-sa", False),
    ("CC-BY-SA-4.0", "cc-by-sa", True),
    ("CC-BY-NC-SA-3.0", "cc-by-nc-sa", True),
    ("CC-BY-NC-SA-3.0", "cc-by-nc", False),
    ("CC-BY-NC-ND-4.0", "cc-by-nc-nd", True),
    ("CC-BY-4.0", "cc-by-4.0", True),
    ("CC-BY-4.0", "CC-BY-3.0", False),
    ("CC0-1.0", "cc0", True),
    ("CC0-1.0", "CC0-1.0", True),
    ("public-domain", "public-domain", True),
    ("public-domain", "cc0", False),
    ("unknown", "unknown", True),
    (None, "unknown", True),
    (None, "cc-by", False),
    # open: CC0, public domain, CC BY, CC BY-SA
    ("CC0-1.0", "open", True),
    ("public-domain", "open", True),
    ("CC-BY-4.0", "open", True),
    ("CC-BY-SA-2.0", "OPEN", True),
    ("CC-BY-SA", "open", True),
    ("CC-BY-NC-4.0", "open", False),
    ("CC-BY-ND-4.0", "open", False),
    ("unknown", "open", False),
    # a query in another form is normalised first
    ("CC-BY-4.0", "https://creativecommons.org/licenses/by/4.0/", True),
    ("CC-BY-SA-3.0", "CC BY-SA 3.0", True),
    ("CC-BY-SA-3.0", "by-sa", True),  # a versionless name is its family
    ("CC-BY-SA-3.0", "Attribution 4.0 International", False),
]


@pytest.mark.parametrize("license_id, query, expected", MATCHES)
def test_matches(license_id, query, expected):
    assert matches(license_id, query) is expected


def test_a_query_naming_no_licence_says_so():
    with pytest.raises(ValueError, match="names no licence.*cc-by.*open"):
        matches("CC-BY-4.0", "mit")
    with pytest.raises(ValueError):
        check_query("")
    assert check_query(" CC-BY ") == "cc-by" and check_query("Open") == "open"


def test_ids_matching_lists_the_ids_a_backend_filters_on():
    assert ids_matching("cc-by") == ["CC-BY-1.0", "CC-BY-2.0", "CC-BY-2.5", "CC-BY-3.0", "CC-BY-4.0", "CC-BY"]
    assert ids_matching("cc0") == ["CC0-1.0"] and ids_matching("cc-by-4.0") == ["CC-BY-4.0"]
    opened = ids_matching("open")
    assert {"CC0-1.0", "public-domain", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY", "CC-BY-SA"} <= set(opened)
    assert not any(i.startswith(("CC-BY-NC", "CC-BY-ND")) for i in opened) and "unknown" not in opened
