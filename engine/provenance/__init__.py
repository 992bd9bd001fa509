"""Provenance of every output: invisible watermark, synthetic-media metadata, C2PA manifest.

Order (see ``apply.py``): watermark the pixels -> encode -> metadata -> C2PA sign last.
"""

from engine.provenance.apply import (
    ProvenanceResult,
    ProvenanceStamp,
    apply_provenance,
    finish_file,
    prepare_stamp,
    watermark_frame,
)
from engine.provenance.metadata import DIGITAL_SOURCE_TYPE, MP4_MUXER_OPTIONS, mp4_metadata_tags
from engine.provenance.verify import format_report, run_cli, verify_file

__all__ = [
    "DIGITAL_SOURCE_TYPE",
    "MP4_MUXER_OPTIONS",
    "ProvenanceResult",
    "ProvenanceStamp",
    "apply_provenance",
    "finish_file",
    "format_report",
    "mp4_metadata_tags",
    "prepare_stamp",
    "run_cli",
    "verify_file",
    "watermark_frame",
]
