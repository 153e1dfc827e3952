"""Coverage-guided fuzz targets for every parser of bytes sipwatch did not write.

One module per target, each with `TestOneInput(data: bytes) -> None`: it feeds `data` to one
parser the way sipwatch's own code does and lets only that module's parse error through
(caught, the input is simply refused); any other exception, or a broken invariant
(AssertionError), is a crash. The modules import nothing of atheris, so the unit-test smoke
(tests/unit/test_fuzz_smoke.py) runs them without it; `python -m fuzz.run TARGET` runs one
under atheris (the `fuzz` extra), and `make fuzz` runs them all (docs/fuzzing.md).

This is a test rig, not product: it lives at the top level, beside bench/, outside both the
installed package and pytest's collection.
"""

#: Every target, in the order `make fuzz` runs them. Corpus seeds: fuzz/corpus/<target>/.
TARGETS = (
    "sip_message",
    "sip_framer",
    "sip_headers",
    "digest",
    "drbd",
    "crm_mon",
    "crm_simulate",
    "cibadmin",
    "crm_attribute",
    "config",
    "policy",
    "sdp",
    "ws_frames",
)
