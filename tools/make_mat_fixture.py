#!/usr/bin/env python3
"""A tiny compressed MATLAB Level 5 file written by scipy, for carp-data's .mat reader.

Writes crates/carp-data/tests/fixtures/scipy_v5.mat (read by carp-data's matfile tests): the
variable kinds Flowers-102 (setid.mat: trnid; imagelabels.mat: labels, uint8 here to exercise
a narrower storage type) and Stanford Cars (an `annotations` struct array with a char field;
cars_meta.mat: a `class_names` cell of strings) use.

Usage: python3 tools/make_mat_fixture.py   (needs numpy and scipy; scipy version in the header)
"""
import numpy as np
import scipy
import scipy.io

OUT = "crates/carp-data/tests/fixtures/scipy_v5.mat"
annotations = np.zeros((1, 2), dtype=[("class", "O"), ("fname", "O")])
annotations[0, 0] = (np.array([[3]], dtype=np.uint8), "00001.jpg")
annotations[0, 1] = (np.array([[7]], dtype=np.uint8), "00002.jpg")
names = np.empty((1, 2), dtype=object)
names[0, 0] = "AM General Hummer SUV 2000"
names[0, 1] = "Acura RL Sedan 2012"
scipy.io.savemat(
    OUT,
    {
        "trnid": np.array([[3, 1, 4]], dtype=np.float64),
        "labels": np.array([[1, 2, 1, 2]], dtype=np.uint8),
        "annotations": annotations,
        "class_names": names,
    },
    do_compression=True,
)
# savemat's header text carries a creation date; make the file reproducible.
data = bytearray(open(OUT, "rb").read())
header = f"MATLAB 5.0 MAT-file, written by tools/make_mat_fixture.py with scipy {scipy.__version__}".encode()
data[:116] = header.ljust(116, b" ")
open(OUT, "wb").write(bytes(data))
check = scipy.io.loadmat(OUT, squeeze_me=True)
print(f"wrote {OUT} ({len(data)} bytes); trnid={check['trnid']}")
