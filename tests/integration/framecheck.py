#!/usr/bin/env python3
"""framecheck.py: frames yavta wrote (-F DIR/frame-#.bin) are video0's
pattern (include/fomap/video.h) byte for byte, with rising sequence numbers.

  framecheck.py DIR COUNT SIZE LINES
"""
import os
import struct
import sys


def main():
    d, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    files = sorted(f for f in os.listdir(d) if f.startswith('frame-'))
    assert len(files) == count, (len(files), count)
    last = -1
    for f in files:
        data = open(os.path.join(d, f), 'rb').read()
        assert len(data) == size, (f, len(data))
        seq = struct.unpack('<I', data[:4])[0]
        assert seq > last, (f, seq, last)
        last = seq
        # byte i of line y is (i + 2y + 5 seq) mod 256
        line = size // int(sys.argv[4])
        want = b''.join(
            bytes((i + 2 * y + 5 * seq) & 255 for i in range(line))
            for y in range(size // line))
        assert data[4:] == want[4:], (f, seq)
    print('ok', count, 'frames, last seq', last)


main()
