#!/usr/bin/env python3
"""Writes `crates/krust/symbol-order.txt`: the functions a server with its agent runs from its
start to idle, which the release link lays out together (`crates/krust/build.rs`).

Why: the kernel maps a binary's code 64 KiB around each page a process touches, when those
pages are in the page cache (they are, for a binary just installed or run). The code run at
start and idle is spread over the whole `.text`, so nearly all of it ends up resident. Laid
out together, the same code fills half as many pages and the rest is never mapped.

How: with the block device's read-ahead off and the binary dropped from the page cache, the
pages a process maps are exactly those it touched. Starts `krust server` on a bridge of its
own, waits until it is idle, reads which of its code pages are present
(`/proc/PID/pagemap`), and writes the names of the functions on them, in address order.
Names over 500 characters (a few hundred closures' types, 0.1 MB of code) are left out to
keep the file small. Run as root, on the release build (after a change of Cargo.lock or of
the toolchain, whose symbol hashes the names carry; stale names are ignored by the linker,
and the layout then falls back towards the linker's own order):

    python3 bench/symbol_order.py --krust target/release/krust

The read-ahead setting is restored afterwards.
"""

import argparse
import os
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LONGEST = 500


def read_ahead_file(binary: Path) -> Path:
    """The read-ahead setting of the block device holding `binary`."""
    source = subprocess.run(
        ["findmnt", "-no", "SOURCE", "--target", str(binary)],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    device = Path(source).name
    parent = subprocess.run(
        ["lsblk", "-no", "PKNAME", source], capture_output=True, text=True
    ).stdout.strip()
    return Path("/sys/block") / (parent or device) / "queue" / "read_ahead_kb"


def drop_from_page_cache(binary: Path) -> None:
    fd = os.open(binary, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def load_segments(binary: Path) -> list[tuple[int, int, int]]:
    """(file offset, virtual address, size in the file) of each LOAD segment."""
    out = subprocess.run(["readelf", "-lW", str(binary)], capture_output=True, text=True).stdout
    segments = []
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == "LOAD":
            segments.append((int(fields[1], 16), int(fields[2], 16), int(fields[4], 16)))
    return segments


def resident_code_pages(pid: int, binary: Path) -> set[int]:
    """The virtual addresses (as linked) of the pages of `binary`'s code present in `pid`."""
    segments = load_segments(binary)
    pages = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or "x" not in fields[1] or Path(fields[5]) != binary:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            offset = int(fields[2], 16)
            for address in range(start, end, 4096):
                pagemap.seek(address // 4096 * 8)
                (entry,) = struct.unpack("<Q", pagemap.read(8))
                if not entry >> 63:
                    continue
                at = offset + address - start
                for file_offset, vaddr, size in segments:
                    if file_offset <= at < file_offset + size:
                        pages.add((vaddr + at - file_offset) & ~4095)
    return pages


def functions_on(binary: Path, pages: set[int]) -> list[str]:
    """The names of the functions of `binary` with code on `pages`, in address order."""
    out = subprocess.run(
        ["nm", "-S", "--no-demangle", "--defined-only", str(binary)],
        capture_output=True, text=True, check=True,
    ).stdout
    functions = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in "tTwW":
            functions.append((int(fields[0], 16), int(fields[1], 16), fields[3]))
    functions.sort()
    names, seen = [], set()
    for address, size, name in functions:
        first, last = address & ~4095, (address + max(size, 1) - 1) & ~4095
        touched = any(page in pages for page in range(first, last + 4096, 4096))
        if touched and name not in seen and len(name) <= LONGEST:
            seen.add(name)
            names.append(name)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--krust", required=True, type=Path)
    parser.add_argument("--output", type=Path, default=ROOT / "crates/krust/symbol-order.txt")
    parser.add_argument("--idle", type=float, default=25.0, help="seconds to let it settle")
    args = parser.parse_args()
    binary = args.krust.resolve()
    setting = read_ahead_file(binary)
    before = setting.read_text().strip()
    work = Path(tempfile.mkdtemp(prefix="krust-order-"))
    server = None
    try:
        setting.write_text("0")
        drop_from_page_cache(binary)
        server = subprocess.Popen(
            [str(binary), "server", "--data-dir", str(work / "data"), "--port", "17863",
             "--agent-port", "17864", "--bind-address", "127.0.0.1", "--bridge", "korder0",
             "--pod-cidr", "10.253.0.0/24", "--node-ip", "127.0.0.1"],
            stdout=open(work / "log", "w"), stderr=subprocess.STDOUT,
        )
        time.sleep(args.idle)
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {(work / 'log').read_text()[-2000:]}")
        pages = resident_code_pages(server.pid, binary)
        names = functions_on(binary, pages)
    finally:
        setting.write_text(before)
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        for link in ["korder0", "korder0-dns"]:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        for line in tables.splitlines():
            fields = line.split()  # table FAMILY NAME
            if len(fields) == 3 and fields[2].startswith("korder0"):
                subprocess.run(["nft", "delete", "table", fields[1], fields[2]])
        shutil.rmtree(work, ignore_errors=True)
    args.output.write_text("\n".join(names) + "\n")
    print(f"{len(pages)} code pages ({len(pages) * 4 // 1024} MiB) touched; "
          f"{len(names)} functions written to {args.output}")


if __name__ == "__main__":
    main()
