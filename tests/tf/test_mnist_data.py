"""The shipped MNIST (data/mnist/*.gz) is the original: the MD5 and size of each decompressed file
equal the published ones of the original files, and the licence notice ships with them."""
import gzip
import hashlib
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MNIST = os.path.join(REPO, "data", "mnist")

# Published MD5 and size of the original uncompressed files (yann.lecun.com/exdb/mnist).
ORIGINALS = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 47040016),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 60008),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 7840016),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 10008),
}


@pytest.mark.parametrize("name", sorted(ORIGINALS))
def test_decompressed_md5_matches_original(name):
    data = gzip.open(os.path.join(MNIST, name + ".gz")).read()
    md5, size = ORIGINALS[name]
    assert len(data) == size
    assert hashlib.md5(data).hexdigest() == md5


def test_checksum_file_lists_the_originals():
    listed = {}
    with open(os.path.join(MNIST, "MD5SUMS")) as f:
        for line in f:
            md5, name = line.split()
            listed[name] = md5
    assert listed == {name: md5 for name, (md5, _) in ORIGINALS.items()}


def test_licence_notice_ships():
    notice = open(os.path.join(MNIST, "NOTICE")).read()
    assert "CC BY-SA 3.0" in notice and "LeCun" in notice and "Cortes" in notice
