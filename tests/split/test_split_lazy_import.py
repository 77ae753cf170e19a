"""``import taskcodec`` stays torch-free; ``tc.split`` / ``tc.nn`` load on first use."""

import subprocess
import sys

from ci_support import require


def test_import_taskcodec_does_not_import_torch():
    code = (
        "import sys, taskcodec as tc\n"
        "assert 'torch' not in sys.modules, 'torch imported eagerly'\n"
        "tc.split.partition\n"
        "assert 'torch' in sys.modules\n"
        "try:\n    tc.nope\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)\n"
    )
    require("torch")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_names_the_extra():
    # Hide torch from the import system: tc.nn must say which extra to install.
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "import taskcodec as tc\n"
        "try:\n    tc.nn\nexcept ImportError as e:\n    assert 'taskcodec[nn]' in str(e), e\n"
        "else:\n    raise SystemExit('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
