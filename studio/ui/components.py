"""Gradio components adjusted for a studio that strangers use."""

from __future__ import annotations

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import NamedString
from gradio_client import utils as client_utils


class UploadFiles(gr.File):
    """``gr.File`` (``type="filepath"``) that leaves nothing behind in Gradio's cache.

    Gradio 6's ``File`` opens an empty named temporary file in its cache for every
    file of every event and never closes or deletes it; on a public server that is
    a leaked descriptor and a stray file per upload. This class returns the path
    alone, after the same file-type check, and renders as a plain ``File``.
    """

    def get_block_name(self) -> str:
        return "file"

    def _process_single_file(self, f: FileData) -> NamedString:
        if self.file_types and not client_utils.is_valid_file(f.path, self.file_types):
            raise gr.Error(
                f"Invalid file type. Please upload a file that is one of these formats: "
                f"{self.file_types}"
            )
        return NamedString(f.path)
