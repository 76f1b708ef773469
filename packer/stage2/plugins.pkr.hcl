# The plugin this stage needs, for Packer 1.7 and later (1.10 dropped the
# bundled amazon builder): `packer init packer/stageN` installs it, and
# `packer build packer/stageN` (the directory) reads this file with the
# template. Packer 1.6.6 has the builder built in and rejects this block,
# so there the template file is given alone and this file is left out.
# Keep packer/stage1/plugins.pkr.hcl and packer/stage2/plugins.pkr.hcl
# the same (tests/t0950-packer-null-build.sh checks it).
packer {
  required_version = ">= 1.6.6"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0, < 2.0.0"
    }
  }
}
