"""The multimodal phantom's site settings: how each site stores mammograms, which site lacks pathology, image sizes."""

from __future__ import annotations

from dataclasses import dataclass

from simulation.phantom.mammo_dicom import MammoStorage


@dataclass(frozen=True)
class MultimodalSite:
    """One site's extra modalities: its mammogram storage and whether it has micrographs."""

    mammo_storage: MammoStorage
    pathology: bool = True


@dataclass(frozen=True)
class MultimodalSizes:
    """A preset's micrograph side and mammographic view (rows, columns) in pixels."""

    micrograph: int
    mammo: tuple[int, int]


MULTIMODAL_SITES: dict[str, dict[str, MultimodalSite]] = {
    "demo": {"hospital_a": MultimodalSite("png16"), "hospital_b": MultimodalSite("dicom_mono1"),
             "hospital_c": MultimodalSite("dicom_mono2", pathology=False), "hospital_ext": MultimodalSite("png8")},
    "tiny": {"site_a": MultimodalSite("png16"), "site_b": MultimodalSite("dicom_mono1", pathology=False),
             "site_ext": MultimodalSite("png8")},
}
MULTIMODAL_SIZES: dict[str, MultimodalSizes] = {
    "demo": MultimodalSizes(128, (160, 128)),
    "tiny": MultimodalSizes(96, (96, 80)),
}
