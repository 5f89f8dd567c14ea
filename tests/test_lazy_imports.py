"""Lazy package roots: the text-only prompt module loads neither torch nor transformers (issue 20)."""

import subprocess
import sys

import garvideo.model

# VmHWM (this process's peak resident set), not ru_maxrss: Linux keeps ru_maxrss across fork + exec, so a
# child of a large pytest process would report the parent's size.
PROBE = """
import sys
import garvideo.model.prompts
hwm = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:'))
print('torch' in sys.modules, 'transformers' in sys.modules, hwm)
"""


def test_model_prompts_import_is_light():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    torch_loaded, tf_loaded, maxrss_kb = out.split()
    assert torch_loaded == "False"
    assert tf_loaded == "False"
    assert int(maxrss_kb) < 100 * 1024  # VmHWM is in kB: under 100 MB


def test_lazy_root_exports_every_name():
    for name in garvideo.model.__all__:
        assert getattr(garvideo.model, name) is not None, name
    assert set(garvideo.model.__all__) <= set(dir(garvideo.model))
    from garvideo.model.loading import GarBundle

    assert garvideo.model.GarBundle is GarBundle
