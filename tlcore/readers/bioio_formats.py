"""What bioio's own plugin list knows: which bioio reader plugin reads which extension.

Pure data, imported only when a message is built: the registry's install hints (a file no
installed reader claims names the bioio plugin to install) and the bioio bridge's cheap refusal
(no installed bioio plugin claims the extension, so bioio need not be imported to say no). The
lists are each plugin's ``ReaderMetadata.get_supported_extensions()`` (normalised: lower case,
leading dot) at the versions named below; a plugin not listed here is not ruled out by the
bridge, only not hinted.
"""

from __future__ import annotations

#: bioio reader distribution -> the extensions it declares (bioio-bioformats 2.0.0,
#: bioio-czi 3.0.1, bioio-dv 1.2.0, bioio-imageio 1.3.0, bioio-imagexpress 0.3.0, bioio-lif
#: 2.0.1, bioio-nd2 2.6.0, bioio-ome-tiff 1.4.0, bioio-ome-zarr 3.8.1, bioio-sldy 1.5.0,
#: bioio-tiff-glob 1.2.0, bioio-tifffile 1.3.1, bioio-vsi 0.1.0).
_DECLARED: dict[str, str] = {
    "bioio-bioformats": (
        ".1sc .2fl .acff .afi .afm .aim .al3d .am .amiramesh .apl .arf .avi .bin .bip .bmp .btf "
        ".c01 .cfg .ch5 .cif .cr2 .crw .csv .cxd .czi .dat .dcm .dib .dm2 .dm3 .dm4 .dti .dv "
        ".eps .exp .fdf .fff .ffr .fits .flex .fli .frm .gel .gif .grey .hdf .hdr .hed .his "
        ".htd .html .hx .i2i .ics .ids .im3 .img .ims .inr .ipl .ipm .ipw .jp2 .jpg .jpk .jpx "
        ".l2d .labels .lei .lif .liff .lim .lms .lsm .mdb .mnc .mng .mod .mov .mrc .mrw .msr "
        ".mtb .mvd2 .naf .nd .nd2 .ndpi .ndpis .nef .nhdr .nii .nii.gz .nrrd .obf .obsep .oib "
        ".oif .oir .ome .ome.btf .ome.tf2 .ome.tf8 .ome.tif .ome.tiff .ome.xml .par .pbm "
        ".pcoraw .pcx .pds .pgm .pic .pict .png .pnl .ppm .pr3 .psd .qptiff .r3d .raw .rcpnl "
        ".rec .scn .sdt .seq .sif .sld .sm2 .sm3 .spc .spe .spi .stk .stp .svs .sxm .tf2 .tf8 "
        ".tfr .tga .tif .tiff .tnb .top .txt .v .vms .vsi .vws .wat .wlz .xdce .xml .xqd .xqf "
        ".xv .xys .zfp .zfr .zvi"
    ),
    "bioio-czi": ".czi",
    "bioio-dv": ".dv .r3d",
    "bioio-imageio": (
        ".264 .265 .3fr .3g2 .a64 .adp .amr .amv .apng .arw .asf .avc .avi .avs .avs2 .bay .bif "
        ".bmp .cdg .cgi .cif .ct .dcr .dib .dip .dng .dnxhd .dv .dvd .erf .exr .fff .gif .icb "
        ".if .iiq .imt .ism .jfif .jif .jng .jp2 .jpg .mcidas .mov .mp4 .mpo .msp .pcx .pdf "
        ".png .ppm .ps .spider .xvthumb .zif"
    ),
    "bioio-imagexpress": ".jdce",
    "bioio-lif": ".lif",
    "bioio-nd2": ".nd2",
    "bioio-ome-tiff": ".ome.tif .ome.tiff .tif .tiff",
    "bioio-ome-zarr": ".ozx .zarr .zip",
    "bioio-sldy": ".dir .sldy",
    "bioio-tiff-glob": ".tif .tiff",
    "bioio-tifffile": ".lsm .tif .tiff",
    "bioio-vsi": ".vsi",
}
BIOIO_PLUGINS: dict[str, tuple[str, ...]] = {d: tuple(e.split()) for d, e in _DECLARED.items()}

#: Plugins that also read a folder as one image (``supports_directory_images``).
DIRECTORY_PLUGINS: frozenset[str] = frozenset({"bioio-imagexpress", "bioio-sldy"})

#: Plugins that need more than pip: bioio-bioformats runs Bio-Formats on a Java runtime.
NEEDS: dict[str, str] = {"bioio-bioformats": "a Java runtime (JDK 11+)"}


def plugins_for(filename: str) -> list[str]:
    """The bioio plugins whose declared extensions ``filename`` ends with, the most specific
    first as bioio ranks them: longest matching extension, then fewest extensions declared
    (bioio-dv before bioio-imageio for ``.dv``), then name."""
    lower = filename.lower()
    found: list[tuple[int, int, str]] = []
    for dist, exts in BIOIO_PLUGINS.items():
        n = max((len(e) for e in exts if lower.endswith(e) and len(lower) > len(e)), default=0)
        if n:
            found.append((-n, len(exts), dist))
    return [dist for *_, dist in sorted(found)]


def install_hints(filename: str, *, bridge_installed: bool) -> list[str]:
    """``pip install`` lines for a file no installed tlcore reader claims, when a bioio plugin
    declares its extension (empty otherwise): the bridge itself when it is missing, and the
    most specific bioio plugins (at most three) that are not installed."""
    from importlib.metadata import PackageNotFoundError, distribution

    hints: list[str] = []
    for dist in plugins_for(filename)[:3]:
        try:
            distribution(dist)
            continue  # installed: the bridge asked it, and its refusal is in the message
        except PackageNotFoundError:
            pass
        packages = dist if bridge_installed else f"tlcore-bioio {dist}"
        ext = next(
            e
            for e in sorted(BIOIO_PLUGINS[dist], key=len, reverse=True)
            if filename.lower().endswith(e)
        )
        need = f", needs {NEEDS[dist]}" if dist in NEEDS else ""
        hints.append(f"  pip install {packages}   # reads {ext} through bioio{need}")
    return hints
