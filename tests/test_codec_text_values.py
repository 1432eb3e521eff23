"""Both codecs take any str for text fields, pydicom's UID subclass included."""

from __future__ import annotations

from types import ModuleType

from pydicom.uid import UID

from dicomnet.core.pdu import AssociateRQ, PresentationContextRQ


def test_str_subclasses_encode_like_str(codec: ModuleType) -> None:
    plain = AssociateRQ(
        "SCP", "SCU", (PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),)
    )
    subclassed = AssociateRQ(
        "SCP",
        "SCU",
        (PresentationContextRQ(1, UID("1.2.840.10008.1.1"), (UID("1.2.840.10008.1.2"),)),),
    )
    assert codec.encode_pdu(subclassed) == codec.encode_pdu(plain)
    command = {0x0100: 0x0001, 0x0002: UID("1.2.840.10008.5.1.4.1.1.2"), 0x0800: 0x0101}
    assert (
        codec.decode_command(codec.encode_command(command))[0x0002] == "1.2.840.10008.5.1.4.1.1.2"
    )
