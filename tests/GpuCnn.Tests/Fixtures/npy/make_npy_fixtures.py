"""The .npy layouts np.load reads that a hand-made header would not cover: each file holds the same (2, 3, 4) values
(0, 1.5, 3, ... in C order, small enough for every type) as NumPy writes them in another dtype, byte order or
memory order; c_order.f4.npy is the plain float32 array every one must read as. Run with numpy from this folder."""
import numpy as np

values = (np.arange(24, dtype=np.float64) * 1.5).reshape(2, 3, 4)
np.save("c_order.f4.npy", values.astype("<f4"))
np.save("fortran.f4.npy", np.asfortranarray(values.astype("<f4")))
np.save("fortran_big.f8.npy", np.asfortranarray(values.astype(">f8")))
np.save("big.f4.npy", values.astype(">f4"))
np.save("half.f2.npy", values.astype("<f2"))
labels = np.arange(24).reshape(2, 3, 4) % 7  # integer types: the values 0..6
np.save("labels_c_order.i8.npy", labels.astype("<i8"))
for dtype in ["|i1", "<i2", ">i2", "<u2", ">u4", "<u8", ">i8"]:
    np.save(f"labels.{dtype[1:]}{'_big' if dtype[0] == '>' else ''}.npy", labels.astype(dtype))
np.save("flags.b1.npy", labels.astype(bool))
np.save("empty.f4.npy", np.zeros((0, 1, 2, 2), dtype="<f4"))
