"""The LICENSE file is the license pyproject.toml declares (Apache-2.0), in its standard text."""

import hashlib
import tomllib

from tests.golden import ROOT

# md5 of https://www.apache.org/licenses/LICENSE-2.0.txt, the text every Apache-2.0 project ships
APACHE_2_0_MD5 = "3b83ef96387f14655fc854ddc3c6bd57"


def test_license_file_is_the_apache_2_0_text_that_pyproject_declares():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["license"]
    assert declared == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in text and b"Version 2.0, January 2004" in text
    assert hashlib.md5(text).hexdigest() == APACHE_2_0_MD5
