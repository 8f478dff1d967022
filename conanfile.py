"""Conan 2 recipe for tern, a header-only library: `conan create .` packages include/tern/.

The package holds only headers (package type header-library, one package id for every setting);
consumers get tern::tern through CMakeDeps (find_package(tern)) or PkgConfigDeps (tern.pc), with
tern's dependencies as transitive header requirements.
"""

import os
import re

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, load
from conan.tools.layout import basic_layout
from conan.tools.scm import Version

required_conan_version = ">=2.0"


class TernConan(ConanFile):
    name = "tern"
    description = ("Header-only C++20 library for training and deploying small neural networks "
                   "with ternary (1.58-bit) weights")
    topics = ("neural-networks", "quantization", "ternary", "bitnet", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "include/*", "LICENSE*", "CHANGELOG.md"
    no_copy_source = True

    # The same dependencies as CMakeLists.txt / cmake/ternConfig.cmake.in. xtensor 0.24's Conan
    # recipe itself requires xtl/0.7.5, xsimd/13.0.0 and nlohmann_json/3.11.3: the versions below
    # match it, so the graph has no conflicts.
    _requirements = (
        "xtensor/0.24.7",
        "xtl/0.7.5",
        "xsimd/13.0.0",
        "nlohmann_json/3.11.3",
        "zlib/[>=1.2.11 <2]",
    )

    @property
    def _min_cppstd(self):
        return 20

    @property
    def _compilers_minimum_version(self):
        return {"gcc": "11", "clang": "14", "apple-clang": "14", "msvc": "193"}

    def set_version(self):
        text = load(self, os.path.join(self.recipe_folder, "include", "tern", "version.hpp"))
        self.version = re.search(r'#define\s+TERN_VERSION_STRING\s+"([^"]+)"', text).group(1)

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        # tern's public headers include these libraries' headers: transitive_headers is the default
        # for a header-library's requirements, spelled out here for the reader.
        for ref in self._requirements:
            self.requires(ref, transitive_headers=True)

    def package_id(self):
        self.info.clear()  # headers only: the same package for every configuration

    def validate(self):
        if self.settings.get_safe("compiler.cppstd"):
            check_min_cppstd(self, self._min_cppstd)
        minimum = self._compilers_minimum_version.get(str(self.settings.compiler))
        if minimum and Version(self.settings.compiler.version) < minimum:
            raise ConanInvalidConfiguration(
                f"{self.ref} needs C++{self._min_cppstd}: {self.settings.compiler} >= {minimum}")

    def build(self):
        pass  # nothing to build

    def package(self):
        copy(self, "LICENSE*", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", src=os.path.join(self.source_folder, "include"),
             dst=os.path.join(self.package_folder, "include"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "tern")
        self.cpp_info.set_property("cmake_target_name", "tern::tern")
        self.cpp_info.set_property("pkg_config_name", "tern")
        if self.settings.os in ("Linux", "FreeBSD"):
            self.cpp_info.system_libs = ["pthread", "m"]
