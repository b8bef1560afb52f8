"""Ids of the images in array files (:mod:`raycifar.data.array_files`): the file's own id
array, or a template over the file, the block and the index.

A template is Python format text over these fields:

==========  ===================================================================
``stem``    the file name without its suffix (``fog`` for ``fog.npy``; odd bytes as ``\\xNN``)
``file``    the file's number among the inputs, from 0
``row``     the image's index in its file, from 0
``block``   ``row // block_size`` (0 without ``--block-size``)
``block1``  ``block + 1``: blocks counted from 1 (severities 1..5)
``index``   ``row % block_size``: the index in its block (``row`` without a block size)
==========  ===================================================================

so that consecutive blocks of 10,000 images per severity with ``{stem}_{block1}_{index}`` give
``fog_1_0`` .. ``fog_5_9999``. Format specs work (``{index:05d}``). A template must make every
id unique: :func:`check_template` refuses one that does not, before anything is read.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from raycifar.data.array_files import ArrayFile
from raycifar.errors import UserError

FIELDS = ("stem", "file", "row", "block", "block1", "index")


def default_template(files: Sequence[ArrayFile], block_size: int | None) -> str:
    """``{row}`` for one file, ``{stem}_{row}`` for several; with a block size, ``{block}_{index}``
    in place of ``{row}``."""
    within = "{block}_{index}" if block_size else "{row}"
    return within if len(files) == 1 else "{stem}_" + within


def _fields(template: str) -> set[str]:
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise UserError(f"--ids {template!r}: not a format template ({err})") from None
    unknown = sorted(used - set(FIELDS))
    if unknown:
        raise UserError(
            f"--ids {template!r}: unknown field {{{unknown[0]}}}; use {', '.join('{' + f + '}' for f in FIELDS)}"
        )
    return used


def check_template(template: str, files: Sequence[ArrayFile], block_size: int | None) -> None:
    """A one-line UserError if ``template`` is not valid or could give two images one id: it
    must tell the images of a file apart (``{row}``, or ``{index}`` with ``{block}`` when a file
    has more than one block) and, with several files, the files (``{file}``, or ``{stem}``
    when the stems differ). Each file must be a whole number of blocks."""
    used = _fields(template)
    for number, found in enumerate(files):
        if block_size and len(found) % block_size:
            raise UserError(
                f"{found.name}: {len(found):,} images is not a whole number of blocks of {block_size:,} (--block-size)"
            )
        several_blocks = block_size is not None and len(found) > block_size
        if "row" not in used and not ("index" in used and (not several_blocks or used & {"block", "block1"})):
            raise UserError(
                f"--ids {template!r}: the images of {found.name} would share ids; add {{row}}, or {{block}} and {{index}}"
            )
        try:
            template.format(**_values(found, number, 0, block_size))
        except (ValueError, TypeError) as err:
            raise UserError(f"--ids {template!r}: {err}") from None
    stems = [found.stem for found in files]
    if len(files) > 1 and "file" not in used and ("stem" not in used or len(set(stems)) < len(stems)):
        raise UserError(
            f"--ids {template!r}: the files would share ids; add {{stem}} (with different file names) or {{file}}"
        )


def _values(found: ArrayFile, number: int, row: int, block_size: int | None) -> dict:
    block, index = divmod(row, block_size) if block_size else (0, row)
    return {"stem": found.stem, "file": number, "row": row, "block": block, "block1": block + 1, "index": index}


def batch_ids(
    template: str | None, found: ArrayFile, number: int, first: int, count: int, block_size: int | None
) -> list[str]:
    """The ids of images ``first .. first+count-1`` of ``found`` (the ``number``-th input):
    its own ids when ``template`` is None, else the template's."""
    if template is None and found.ids is not None:
        return found.ids[first : first + count]
    assert template is not None
    return [template.format(**_values(found, number, row, block_size)) for row in range(first, first + count)]
