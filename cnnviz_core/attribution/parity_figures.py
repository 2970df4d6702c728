"""Parity figures of the methods against their reference libraries, as the parity tests measured them
(the smallest Pearson r over each test's maps: random-weight torchvision models, two targets each).
Documentation for the README's method table (``python -m cnnviz_core methods --markdown``); the tests
assert their own thresholds (r >= 0.99 per map)."""
from __future__ import annotations

_PGC = "r ≥ 0.99 (tests/attribution/test_attr_parity.py)"
_VARIANTS = "r ≥ 0.99999 (tests/attribution/test_cam_variants.py)"
_CAPTUM = "r ≥ 0.99 (tests/attribution/test_attr_parity.py)"

#: method key -> (reference library, figure and the test that measures it).
PARITY: dict[str, tuple[str, str]] = {
    "gradcam": ("pytorch-grad-cam, Captum", _PGC),
    "gradcam++": ("pytorch-grad-cam", _PGC),
    "xgradcam": ("pytorch-grad-cam", _PGC),
    "layercam": ("pytorch-grad-cam", _PGC),
    "hirescam": ("pytorch-grad-cam", _PGC),
    "ablationcam": ("pytorch-grad-cam", _PGC),
    "eigencam": ("paper's formula (pgc centres)", "formula test (tests/attribution/test_attr_parity.py)"),
    "scorecam": ("paper's formula (pgc softmaxes over channels)", "formula test (tests/attribution/test_attr_parity.py)"),
    "saliency": ("Captum", _CAPTUM),
    "deconvnet": ("Captum", _CAPTUM),
    "guided_backprop": ("Captum", _CAPTUM),
    "guided_gradcam": ("Captum", _CAPTUM),
    "integrated_gradients": ("Captum", _CAPTUM),
    "occlusion": ("Captum", _CAPTUM),
    "eigengradcam": ("pytorch-grad-cam", _VARIANTS),
    "gradcam_elementwise": ("pytorch-grad-cam", _VARIANTS),
    "kpcacam": ("pytorch-grad-cam", _VARIANTS),
    "finercam": ("pytorch-grad-cam", _VARIANTS),
    "shapleycam": ("pytorch-grad-cam", _VARIANTS),
    "blur_ig": ("PAIR saliency", "r ≥ 0.999999 (tests/attribution/test_path_methods.py)"),
    "guided_ig": ("PAIR saliency", "r ≥ 0.999999 (tests/attribution/test_path_methods.py)"),
    "xrai": ("PAIR saliency (given the paper's IG)", "r ≥ 0.999999; 0.933 with PAIR's own IG "
             "(tests/attribution/test_path_methods.py)"),
    "lrp_epsilon": ("Zennit", "r ≥ 0.99999 (tests/attribution/test_lrp.py)"),
    "lrp_gamma": ("Zennit (EpsilonGammaBox)", "r ≥ 0.99999 (tests/attribution/test_lrp.py)"),
    "lrp_alpha_beta": ("Zennit (EpsilonAlpha2Beta1)", "r ≥ 0.99999 (tests/attribution/test_lrp.py)"),
    "fullgrad": ("pytorch-grad-cam (per-layer terms r = 1.0; pgc rescales per colour channel, the paper as a whole)",
                 "final map r ≥ 0.978; paper formula and completeness tested (tests/attribution/test_fullgrad_fusion_dff.py)"),
    "multilayer_cam": ("pytorch-grad-cam (mean), TorchCAM fuse_cams (max)",
                       "r ≥ 0.9999 (tests/attribution/test_fullgrad_fusion_dff.py)"),
    "refinecam": ("pytorch-grad-cam", "r ≥ 0.9997 (tests/attribution/test_fullgrad_fusion_dff.py)"),
    "dff": ("scikit-learn's multiplicative-update NMF from the same start (pgc's solver and shift differ)",
            "equal to about 1e-15 (tests/attribution/test_fullgrad_fusion_dff.py)"),
    "sscam": ("TorchCAM", "r ≥ 0.9999 (tests/attribution/test_perturbation_cams.py)"),
    "iscam": ("TorchCAM", "r ≥ 0.997 (tests/attribution/test_perturbation_cams.py)"),
    "smoothgradcam++": ("paper's formula (TorchCAM departs: r 0.38-0.96)",
                        "formula test r ≥ 0.9999 (tests/attribution/test_perturbation_cams.py)"),
    "input_x_gradient": ("Captum", "r ≥ 0.9999 (tests/attribution/test_captum_methods.py)"),
    "gradient_shap": ("Captum (same draws)", "r ≥ 0.9999 (tests/attribution/test_captum_methods.py)"),
    "deeplift": ("Captum (its 0.9.0 bugs worked around in the test)",
                 "r ≥ 0.9999; sums to y(x) - y(x') (tests/attribution/test_captum_methods.py)"),
    "deeplift_shap": ("Captum", "r ≥ 0.9999 (tests/attribution/test_captum_methods.py)"),
    "smoothgrad_sq": ("Captum NoiseTunnel", "r ≥ 0.99998 over six bases (tests/attribution/test_captum_methods.py)"),
    "vargrad": ("Captum NoiseTunnel", "r ≥ 0.99998 over six bases (tests/attribution/test_captum_methods.py)"),
    "lime": ("Captum (same samples, linear regression)", "r ≥ 0.9999 (tests/attribution/test_captum_methods.py)"),
    "kernel_shap": ("Captum (same samples)", "r ≥ 0.9999 (tests/attribution/test_captum_methods.py)"),
    "rise": ("paper's Eq. 6 on the same masks (no reference library installed)",
             "r ≥ 0.9999 (tests/attribution/test_perturbation_cams.py)"),
}
