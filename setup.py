"""Map the design card's top-level folders onto one import namespace.

`host/`, `bridge/`, `engines/` and `presets/` stay at the top of the repository (the layout
musicians and contributors see), yet import as `backline.host`, `backline.bridge`, ... .
`backline` itself is a PEP 420 namespace package, so no extra top-level folder is needed.
pyproject.toml holds all metadata; this file only computes the package mapping.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).parent
FOLDERS = {"backline.host": "host", "backline.bridge": "bridge", "backline.engines": "engines", "backline.presets": "presets"}

packages: list[str] = []
package_dir: dict[str, str] = {}
for namespace, folder in FOLDERS.items():
    packages.append(namespace)
    package_dir[namespace] = folder
    # Namespace discovery also lists data-only folders (e.g. engines/*/weights) so their files ship.
    packages += [f"{namespace}.{sub}" for sub in find_namespace_packages(str(ROOT / folder), exclude=["*__pycache__*"])]

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={
        "backline.presets": ["**/*.toml", "**/*.flac", "**/*.wav", "**/*.safetensors", "**/*.json", "**/*.mid", "**/*.yaml"],
        "backline.engines": ["**/*.safetensors", "**/*.json", "**/*.mid", "**/*.toml"],
    },
)
