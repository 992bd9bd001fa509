"""Model families: the pre- and post-processing of one kind of network, as code.

A *model* is data (a catalogue entry naming its family); a *family* says what the
network's file must look like (``engine.families.io``) and how frames become its
tensors and back. ``engine.families.table`` lists every family's tensors.
"""
