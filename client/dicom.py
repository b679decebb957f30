"""Decode one DICOM image as scanners write it: every photometric interpretation and pixel-data transfer syntax.

Pixel data is decoded by pydicom's handlers and the declared plugins (pylibjpeg with libjpeg for
JPEG and JPEG-LS, openjpeg for JPEG 2000; Pillow where it can): native little and big endian, implicit VR, deflated, RLE,
JPEG baseline, extended (12-bit) and lossless (process 14 and SV1), JPEG-LS lossless and
near-lossless, JPEG 2000 lossless and lossy. MPEG and other video syntaxes have no decoder here.

Rules:

* Frame: a multi-frame file gives one frame, RepresentativeFrameNumber (0028,6010, 1-based)
  when present and within 1..NumberOfFrames, else the middle frame (0-based index ``n // 2``).
  Only that frame is decoded.
* Grayscale (MONOCHROME1/2): the modality LUT (Rescale Slope/Intercept or Modality LUT
  Sequence), then the VOI LUT (VOI LUT Sequence, else Window Center/Width) when present.
  MONOCHROME1 is inverted as ``lo + hi - value``, where ``[lo, hi]`` is the VOI output range when a
  VOI transform applied (``[0, 2**bits - 1]`` of a VOI LUT; pydicom's windowing range otherwise),
  else the modality-LUT image of the stored value range that BitsStored and PixelRepresentation
  allow; never the image's own extremes, so equal stored values invert equally in every file.
* Colour: RGB, YBR_FULL, YBR_FULL_422 (and JPEG 2000's YBR_ICT/YBR_RCT) come out as RGB from
  pydicom; PALETTE COLOR goes through its palette to RGB.
* Image area: the bounding box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) of the ultrasound regions
  (0018,6011) whose RegionSpatialFormat is 1 (2D), tissue regions (RegionDataType 1) preferred,
  several joined; none when the file has no such region.
* Pixel limit: Rows x Columns x SamplesPerPixel above the caller's limit fails before decoding.

Errors name the file and the reason (``SiteDataError``; its public text names neither path nor case).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

from client.errors import SiteDataError

if TYPE_CHECKING:
    from client.cine import Cine

Box = tuple[int, int, int, int]
GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")  # pydicom returns these as RGB
PALETTE = "PALETTE COLOR"
_TISSUE, _SPATIAL_2D = 1, 1
_PIXEL_DATA, _ITEM, _SEQUENCE_END, _UNDEFINED = (0x7FE0, 0x0010), (0xFFFE, 0xE000), (0xFFFE, 0xE0DD), 0xFFFFFFFF
_META_START = 132  # preamble and 'DICM'
_ELEMENT_HEADER = 12  # the longest element header (explicit VR with a 4-byte length): fewer bytes left are a cut one


@dataclass(frozen=True)
class DicomFrame:
    """One decoded frame: (H, W) grayscale after the LUTs, or (H, W, 3) RGB; and the ultrasound image area."""

    pixels: np.ndarray
    region: Box | None


def read_header(path: Path) -> Dataset:
    """The dataset without its pixel data; fails on a file that is not DICOM or whose header is cut."""
    return _read_header(path)[0]


def _read_header(path: Path) -> tuple[Dataset, int]:
    """The header, and the file offset where its pixel data element starts (where pydicom stopped reading)."""
    try:
        with path.open("rb") as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
            pixel_offset = handle.tell()
        cut = _cut_in_header(path, ds)
    except InvalidDicomError as err:
        raise SiteDataError(
            f"DICOM {path}: unreadable: not DICOM, or cut before its header ends: {err}", "DICOM file unreadable (not DICOM, or cut in its header)"
        ) from err
    except Exception as err:  # noqa: BLE001 - pydicom fails on a cut or garbled header in many ways (struct, EOF, value errors)
        raise SiteDataError(f"DICOM {path}: unreadable or truncated header: {err}", "DICOM file unreadable or truncated (header)") from err
    if cut:
        raise SiteDataError(f"DICOM {path}: truncated: the file ends inside its header", "DICOM file truncated (header)")
    return ds, pixel_offset


def _opened(path: Path, max_pixels: int | None) -> tuple[Dataset, str]:
    """The header of a file whose image can be decoded (size within the limit, a known photometric, pixel data complete), and its photometric."""
    ds, pixel_offset = _read_header(path)
    photometric = _check_image(path, ds, max_pixels)
    if _cut_in_pixel_data(path, ds, pixel_offset):
        raise SiteDataError(f"DICOM {path}: pixel data truncated: the file ends inside its Pixel Data", "DICOM pixel data truncated")
    return ds, photometric


def decode_dicom(path: Path, max_pixels: int | None) -> DicomFrame:
    """Decode the file's chosen frame (see the module rules) as grayscale or RGB, with its image area."""
    ds, photometric = _opened(path, max_pixels)
    frame = _decode_frame(path, ds, frame_index(ds))
    try:
        pixels = _present(frame, ds, photometric)
    except (ValueError, NotImplementedError, AttributeError, KeyError, TypeError, IndexError) as err:
        raise SiteDataError(f"DICOM {path}: its LUT or palette cannot be applied: {err}", "DICOM LUT or palette cannot be applied") from err
    return DicomFrame(pixels, us_region(ds, (int(ds.Columns), int(ds.Rows))))


def decode_cine(path: Path, max_pixels: int | None) -> Cine:
    """Decode every frame of a (multi-frame) file as grayscale or RGB, with its frame time and image area (``client/cine.py``)."""
    from client.cine import Cine, frame_time_ms

    ds, photometric = _opened(path, max_pixels)
    frames = []
    for index in range(number_of_frames(ds)):
        try:
            frames.append(_present(_decode_frame(path, ds, index), ds, photometric))
        except SiteDataError as err:
            raise SiteDataError(f"{err} (frame {index + 1} of {number_of_frames(ds)})", err.public) from err
        except (ValueError, NotImplementedError, AttributeError, KeyError, TypeError, IndexError) as err:
            raise SiteDataError(f"DICOM {path}: frame {index + 1}: its LUT or palette cannot be applied: {err}", "DICOM LUT or palette cannot be applied") from err
    return Cine(np.stack(frames), frame_time_ms(ds), us_region(ds, (int(ds.Columns), int(ds.Rows))))


def frame_index(ds: Dataset) -> int:
    """The 0-based frame to read: RepresentativeFrameNumber (1-based) when valid, else the middle one."""
    frames = number_of_frames(ds)
    representative = ds.get("RepresentativeFrameNumber")
    if isinstance(representative, int) and 1 <= representative <= frames:
        return representative - 1
    return frames // 2


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames, 1 when absent or not a positive number."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def sop_class_name(ds: Dataset) -> str:
    """The SOP Class by its pydicom name (the UID itself when pydicom does not know it)."""
    uid = ds.get("SOPClassUID")
    if not uid and hasattr(ds, "file_meta"):
        uid = ds.file_meta.get("MediaStorageSOPClassUID")
    return UID(str(uid)).name if uid else "unknown"


def transfer_syntax(ds: Dataset) -> UID:
    """The file's transfer syntax (implicit VR little endian when the file meta lacks one)."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(uid)) if uid else ImplicitVRLittleEndian


def syntax_name(uid: UID) -> str:
    """A transfer syntax's name, or its UID marked unknown when pydicom does not know it."""
    return uid.name if uid.name != str(uid) else f"{uid} (unknown or private)"


def burned_in_annotation(ds: Dataset) -> str:
    """BurnedInAnnotation (0028,0301): 'YES', 'NO', or '' when absent."""
    return str(ds.get("BurnedInAnnotation", "") or "").strip().upper()


def us_region(ds: Dataset, size: tuple[int, int]) -> Box | None:
    """The image area of the 2D ultrasound regions (tissue preferred; several joined), clipped to ``size`` (W, H)."""
    regions = [r for r in ds.get("SequenceOfUltrasoundRegions", []) if _int(r, "RegionSpatialFormat") == _SPATIAL_2D]
    tissue = [r for r in regions if _int(r, "RegionDataType") == _TISSUE]
    boxes = [b for b in (_region_box(r) for r in tissue or regions) if b is not None]
    if not boxes:
        return None
    w, h = size
    x0, y0 = max(0, min(b[0] for b in boxes)), max(0, min(b[1] for b in boxes))
    x1, y1 = min(w, max(b[2] for b in boxes)), min(h, max(b[3] for b in boxes))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _present(frame: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """A decoded frame as grayscale through its LUTs, or as RGB (a palette applied)."""
    if photometric in GRAYSCALE:
        return grayscale(frame, ds)
    if photometric == PALETTE:
        return np.asarray(apply_color_lut(frame, ds))
    return frame


def grayscale(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values through the modality and VOI LUTs; MONOCHROME1 inverted over the output range (module rules)."""
    values = np.asarray(apply_modality_lut(stored, ds))
    voi_range = _voi_range(ds)
    if voi_range is not None:
        if "VOILUTSequence" in ds and not np.issubdtype(values.dtype, np.integer):
            values = np.floor(values).astype(np.int64)  # a VOI LUT indexes by integer values
        values = np.asarray(apply_voi_lut(values, ds, index=0))
    if str(ds.PhotometricInterpretation) != "MONOCHROME1":
        return values
    lo, hi = voi_range if voi_range is not None else modality_range(ds)
    return lo + hi - values.astype(np.float64)


def stored_range(ds: Dataset) -> tuple[int, int]:
    """The stored values BitsStored and PixelRepresentation allow."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def modality_range(ds: Dataset) -> tuple[float, float]:
    """The modality-LUT image of the stored value range."""
    lo, hi = stored_range(ds)
    values = np.arange(lo, hi + 1, dtype=np.int64) if hi - lo < 2**17 else np.array([lo, hi], dtype=np.int64)
    out = np.asarray(apply_modality_lut(values, ds), dtype=np.float64)
    return float(out.min()), float(out.max())


def _voi_range(ds: Dataset) -> tuple[float, float] | None:
    """The output range of the VOI transform pydicom applies (VOI LUT first, as apply_voi_lut), None without one."""
    lut = ds.get("VOILUTSequence")
    if lut and lut[0].get("LUTDescriptor") is not None and lut[0].get("LUTData") is not None:
        return 0.0, float(2 ** int(lut[0].LUTDescriptor[2]) - 1)
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return None
    # as pydicom's apply_windowing: the stored range (or the modality LUT's bit depth), then rescaled
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    else:
        lo, hi = (float(v) for v in stored_range(ds))
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return lo, hi


def _check_image(path: Path, ds: Dataset, max_pixels: int | None) -> str:
    """Refuse, before decoding, a file with no image, an unknown colour model, too many pixels or no decoder; return its photometric."""
    if "Rows" not in ds or "Columns" not in ds:
        sop = sop_class_name(ds)
        if "Image Storage" in sop:
            raise SiteDataError(
                f"DICOM {path}: truncated: the header of this {sop} ends before its image attributes",
                "DICOM file truncated (header)",
            )
        raise SiteDataError(
            f"DICOM {path}: holds no image (SOP Class {sop}, no Pixel Data); the image column needs an image object",
            f"DICOM file holds no image (SOP Class {sop})",
        )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in GRAYSCALE + COLOUR + (PALETTE,):
        raise SiteDataError(
            f"DICOM {path}: photometric interpretation {photometric!r} is not supported",
            f"DICOM: photometric interpretation {photometric!r} is not supported",
        )
    pixels = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
    if max_pixels is not None and pixels > max_pixels:
        raise SiteDataError(
            f"DICOM {path}: {ds.Columns}x{ds.Rows}x{ds.get('SamplesPerPixel', 1)} = {pixels} pixels exceed the decoder's limit "
            f"of {max_pixels} (PIL.Image.MAX_IMAGE_PIXELS)",
            f"image exceeds the decoder's pixel limit ({pixels} > {max_pixels})",
        )
    _check_decoder(path, transfer_syntax(ds))
    return photometric


def _check_decoder(path: Path, syntax: UID) -> None:
    """Fail, naming the transfer syntax, when no installed decoder handles it."""
    try:
        decoder = get_decoder(syntax)
        available = decoder.is_available
    except NotImplementedError:
        available = False
    if not available:
        fact = f"transfer syntax {syntax_name(syntax)}: no installed decoder handles it"
        raise SiteDataError(f"DICOM {path}: {fact}", f"DICOM {fact}")


def _decode_frame(path: Path, ds: Dataset, index: int) -> np.ndarray:
    """Decode frame ``index`` only (from the file, or from the inflated dataset when deflated)."""
    try:
        if transfer_syntax(ds) == DeflatedExplicitVRLittleEndian:
            source: Any = pydicom.dcmread(path)  # pixel_array cannot seek in a deflated stream
        else:
            source = path
        frame = pixel_array(source, index=index)
    except AttributeError as err:  # pydicom: no (Float) Pixel Data element after the header
        raise SiteDataError(f"DICOM {path}: truncated or incomplete: no pixel data after the header ({err})", "DICOM pixel data missing or truncated") from err
    except Exception as err:  # noqa: BLE001 - any plugin's failure on a cut or corrupt stream is this file's fault
        raise SiteDataError(f"DICOM {path}: pixel data truncated or corrupt: {err}", "DICOM pixel data truncated or corrupt") from err
    return np.asarray(frame)


def _cut_in_header(path: Path, ds: Dataset) -> bool:
    """Whether the file ends inside its file meta group, before any dataset, or inside or just after its last element.

    pydicom reads a short value, or stops at a short element header, without a word.
    """
    size = path.stat().st_size
    meta_length = ds.file_meta.get("FileMetaInformationGroupLength") if hasattr(ds, "file_meta") else None
    if meta_length is not None and size < _META_START + _ELEMENT_HEADER + int(meta_length):
        return True
    if not len(ds):
        return True
    if transfer_syntax(ds) == DeflatedExplicitVRLittleEndian:
        return False  # offsets are in the inflated stream; a cut deflate stream fails when inflated
    last = ds.get_item(max(ds.keys()))
    if not isinstance(last, RawDataElement) or last.length == _UNDEFINED:
        return False
    left = size - (last.value_tell + last.length)
    return left < 0 or 0 < left < _ELEMENT_HEADER


def _cut_in_pixel_data(path: Path, ds: Dataset, offset: int) -> bool:
    """Whether the file ends inside its Pixel Data: before its declared length, or before the delimiter of its fragments.

    Decoders given a cut JPEG stream may return garbage without a word, so the fragments are walked first.
    """
    syntax = transfer_syntax(ds)
    if syntax == DeflatedExplicitVRLittleEndian:
        return False  # inflating a cut stream fails by itself
    order, size = "<" if syntax.is_little_endian else ">", path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(offset)
        head = handle.read(8 if syntax.is_implicit_VR else 12)
        if len(head) < 8 or struct.unpack(f"{order}HH", head[:4]) != _PIXEL_DATA:
            return False  # no Pixel Data element here: decoding says so
        length = struct.unpack(f"{order}L", head[4:8] if syntax.is_implicit_VR else head[8:12])[0]
        if length != _UNDEFINED:
            return offset + len(head) + length > size
        while len(item := handle.read(8)) == 8:
            group, element, length = struct.unpack(f"{order}HHL", item)
            if (group, element) == _SEQUENCE_END:
                return False
            if (group, element) != _ITEM or handle.seek(length, 1) > size:
                return True
        return True


def _region_box(region: Dataset) -> Box | None:
    """One region's box with exclusive ends, from its inclusive DICOM corners; None when incomplete."""
    corners = [_int(region, k) for k in ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")]
    if any(c is None for c in corners):
        return None
    x0, y0, x1, y1 = (int(c) for c in corners)  # type: ignore[arg-type]
    return (x0, y0, x1 + 1, y1 + 1) if x1 >= x0 and y1 >= y0 else None


def _int(ds: Dataset, keyword: str) -> int | None:
    """An integer attribute of a dataset, None when absent or not a number."""
    value = ds.get(keyword)
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
