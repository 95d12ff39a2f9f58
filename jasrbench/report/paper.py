"""The paper's tables: their rows, which of our models fill each row, and the reported values.

Source: Yin, Robinson, Zhang, Fu, "Joint Super-Resolution and Alignment of Tiny
Faces", AAAI 2020, Tables 1–5 (as transcribed in DESIGN §5). Parameters in the
paper are in units of 1024² (JASRNet's 19,885,814 → "18.96M").

A row lists candidate model names in order of preference: the ``paper``
profile trains ``edsr_paper`` (32×256), the CPU profiles the baseline-size
``edsr``; the first one present in the results fills the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    label: str
    models: tuple[str, ...]  # candidates, first present wins
    reported: dict[str, float | None] = field(default_factory=dict)
    # For Table 4's BL/BL_F rows, PSNR and NME come from two single-task models.
    nme_models: tuple[str, ...] | None = None


TABLE1 = (  # PSNR / SSIM ×8 on 300W and HELEN
    Row("Bicubic", ("bicubic",), {"300w_psnr": 21.36, "300w_ssim": 0.594, "helen_psnr": 21.36, "helen_ssim": 0.593}),
    Row("VDSR", ("vdsr",), {"300w_psnr": 21.80, "300w_ssim": 0.558, "helen_psnr": 21.66, "helen_ssim": 0.552}),
    Row("URDGN", ("urdgn",), {"300w_psnr": 21.97, "300w_ssim": 0.617, "helen_psnr": 21.77, "helen_ssim": 0.605}),
    Row("SRResNet", ("srresnet",), {"300w_psnr": 23.30, "300w_ssim": 0.669, "helen_psnr": 23.05, "helen_ssim": 0.674}),
    Row("EDSR", ("edsr_paper", "edsr"), {"300w_psnr": 23.47, "300w_ssim": 0.658, "helen_psnr": 23.40, "helen_ssim": 0.709}),
    Row("TDAE", ("tdae",), {"300w_psnr": 21.12, "300w_ssim": 0.547, "helen_psnr": 21.70, "helen_ssim": 0.542}),
    Row("FSRNet", ("fsrnet",), {"300w_psnr": 23.05, "300w_ssim": 0.678, "helen_psnr": None, "helen_ssim": None}),
    Row("SuperFAN", ("superfan",), {"300w_psnr": 23.13, "300w_ssim": 0.691, "helen_psnr": 23.17, "helen_ssim": 0.695}),
    Row("JASRNet", ("jasrnet",), {"300w_psnr": 23.69, "300w_ssim": 0.711, "helen_psnr": 23.55, "helen_ssim": 0.717}),
)

TABLE2 = (  # NME on 16×16 input: 300W common / challenge / full, AFLW
    Row("SuperFAN", ("superfan",), {"common": 5.60, "challenge": 10.47, "full": 6.55, "aflw": 3.774}),
    Row("FSRNet", ("fsrnet",), {"common": 5.42, "challenge": 10.76, "full": 6.46, "aflw": None}),
    Row("CPM+SBR (bicubic)", ("cpm",), {"common": 5.42, "challenge": 10.65, "full": 6.45, "aflw": 3.87}),
    Row("JASRNet", ("jasrnet",), {"common": 4.60, "challenge": 8.10, "full": 5.29, "aflw": 3.35}),
)
TABLE2_64 = Row("JASRNet (64×64 input)", ("jasrnet_lr64",), {"common": 3.20, "challenge": 7.44, "full": 4.03, "aflw": 2.03})

TABLE3 = (  # LFW: verification accuracy (%), PSNR, SSIM, parameters (paper's M = 1024²)
    Row("HR", ("bicubic",), {"acc": 99.33, "psnr": None, "ssim": None, "params": None}),
    Row("Bicubic", ("bicubic",), {"acc": 79.50, "psnr": 25.28, "ssim": 0.736, "params": None}),
    Row("FSRNet", ("fsrnet",), {"acc": 83.75, "psnr": 26.63, "ssim": 0.800, "params": 27.14}),
    Row("SuperFAN", ("superfan",), {"acc": 84.08, "psnr": 26.83, "ssim": 0.808, "params": 26.41}),
    Row("JASRNet", ("jasrnet",), {"acc": 86.86, "psnr": 27.30, "ssim": 0.818, "params": 18.96}),
)

TABLE4 = (  # ablations on 300W: PSNR / NME
    Row("BL", ("jasrnet_bl_sr",), {"psnr": 23.41, "nme": 5.71}, nme_models=("jasrnet_bl_align",)),
    Row("BL_F", ("jasrnet_bl_f_sr",), {"psnr": 23.50, "nme": 5.70}, nme_models=("jasrnet_bl_f_align",)),
    Row("JT", ("jasrnet_jt",), {"psnr": 23.55, "nme": 5.34}),
    Row("JT_F", ("jasrnet_jt_f",), {"psnr": 23.58, "nme": 5.34}),
    Row("JASRNet", ("jasrnet",), {"psnr": 23.69, "nme": 5.26}),
)

TABLE5 = (  # variants on 300W: PSNR / NME / parameters (paper's M = 1024²)
    Row("Concat", ("jasrnet_concat",), {"psnr": 23.57, "nme": 5.42, "params": None}),
    Row("Adding", ("jasrnet",), {"psnr": 23.69, "nme": 5.29, "params": None}),
    Row("One stage", ("jasrnet_stages1",), {"psnr": 23.61, "nme": 5.44, "params": 16.69}),
    Row("Two stages", ("jasrnet_stages2",), {"psnr": 23.62, "nme": 5.36, "params": 17.83}),
    Row("Res_16", ("jasrnet_res16",), {"psnr": 23.62, "nme": 5.41, "params": 14.46}),
    Row("Res_32", ("jasrnet",), {"psnr": 23.69, "nme": 5.29, "params": 18.96}),
)

PAPER_MILLION = 1024**2
