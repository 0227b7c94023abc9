"""Where Microsoft's sample images are: ``../shared/samples/ms-msix-2020`` beside the checkout.

They are reference data owned by others (two app-attach images msixmgr wrote on Windows 10 20H2,
and the package one was made from), never copied into the repository: tests that need them
use ``need_samples`` and are skipped, with this reason, where the folder is absent.
"""
import os

import pytest

SAMPLES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                        "samples", "ms-msix-2020"))
PINBALL = os.path.join(SAMPLES, "pinball", "Pinball.cim")
PUTTY = os.path.join(SAMPLES, "putty", "putty.cim")
PINBALL_MSIX = os.path.join(SAMPLES, "pinball_1.0.2.0_x64__ynj0a7qyfqv8c.msix")

need_samples = pytest.mark.skipif(
    not os.path.isdir(SAMPLES),
    reason="Microsoft's sample images are not in ../shared/samples/ms-msix-2020 beside the repository "
           "(reference data owned by others, never copied into it)")
