"""The box's DICOM upper layer as association acceptor: a lean, streaming receive path.

pynetdicom supplies the association PDU codec and presentation-context negotiation; the
per-PDU loop is our own, because the hot path (C-STORE) must stream data sets straight to
disk without a thread hand-off or polling delay per PDU.
"""
