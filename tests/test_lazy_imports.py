"""Lazy package roots: the text-only prompt module loads neither torch nor transformers (issue 20)."""

import subprocess
import sys

import garvideo.model

PROBE = """
import resource, sys
import garvideo.model.prompts
print('torch' in sys.modules, 'transformers' in sys.modules, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_model_prompts_import_is_light():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    torch_loaded, tf_loaded, maxrss_kb = out.split()
    assert torch_loaded == "False"
    assert tf_loaded == "False"
    assert int(maxrss_kb) < 100 * 1024  # ru_maxrss is in KiB on Linux: under 100 MB


def test_lazy_root_exports_every_name():
    for name in garvideo.model.__all__:
        assert getattr(garvideo.model, name) is not None, name
    assert set(garvideo.model.__all__) <= set(dir(garvideo.model))
    from garvideo.model.loading import GarBundle

    assert garvideo.model.GarBundle is GarBundle
