# packer/local/qemu.pkr.hcl: the two-stage image pipeline on this machine,
# with Packer's qemu builder instead of amazon-ebs. Stage 1 boots the VM
# tier's Debian 12 base image (tests/vm/vm image) and runs
# stages/stage1.yml; stage 2 boots stage 1's output and runs the stage 2
# manifest. As in the AMI templates, stagehand runs from a shell-local
# provisioner against build.Host/build.Port (the builder's host port
# forward), the gate post-processor fails the build on a report that did
# not pass, and the manifest post-processor records it. A stage that fails
# leaves no image: Packer removes the build's output directory, and the
# image is moved into output_root only after the gate passed.
#
# Each stage has one build per arch (stage1-x86_64, stage1-aarch64, ...),
# so both arches of a stage run side by side in one `packer build`:
#
#   packer build -parallel-builds=2 \
#     -only=qemu.stage1-x86_64,qemu.stage1-aarch64 \
#     -var 'base_image={x86_64="DISK", aarch64="DISK"}' \
#     -var 'kernel={x86_64="VMLINUZ", aarch64="VMLINUZ"}' \
#     -var 'initrd={...}' -var seed_image=SEED -var ssh_private_key_file=KEY \
#     -var 'stagehand_args=["--vars-file","VARS"]' packer/local/qemu.pkr.hcl
#   packer build -only=qemu.stage2-x86_64,... (same vars, another seed)
#
# packer/local/image.sh (`make image`, `ARCH="x86_64 aarch64" make image`)
# makes the inputs and runs both. Run it from the repository root. See
# packer/README.md.

# The inputs that differ per arch are maps keyed by arch (x86_64,
# aarch64); a build runs for each arch it is selected for (-only).
variable "base_image" {
  type        = map(string)
  description = "Stage 1's input disk per arch: VM_IMAGE of tests/vm/vm image --arch ARCH (qcow2, root fs on the whole disk)."
  validation {
    condition     = length([for a in keys(var.base_image) : a if ! contains(["x86_64", "aarch64"], a)]) == 0
    error_message = "The base_image keys must be x86_64 or aarch64."
  }
}

variable "kernel" {
  type        = map(string)
  description = "The base image's kernel per arch (VM_KERNEL of tests/vm/vm image); the disk has no boot loader."
}

variable "initrd" {
  type        = map(string)
  description = "The base image's initrd per arch (VM_INITRD of tests/vm/vm image)."
}

variable "accelerator" {
  type        = map(string)
  default     = {}
  description = "kvm or tcg per arch: VM_ACCEL of tests/vm/vm image (its cached probe); tcg when not given."
  validation {
    condition     = length([for a in values(var.accelerator) : a if ! contains(["kvm", "tcg"], a)]) == 0
    error_message = "The accelerator must be kvm or tcg."
  }
}

variable "seed_image" {
  type        = string
  description = "NoCloud seed (tests/vm/vm seed DIR): the build user and its key."
}

variable "ssh_username" {
  type    = string
  default = "admin"
}

variable "ssh_private_key_file" {
  type        = string
  description = "The build user's private key, whose public half is in the seed."
}

variable "cpus" {
  type    = number
  default = 2
}

variable "memory" {
  type    = number
  default = 2048
}

variable "disk_size" {
  type    = string
  default = "8G"
}

variable "output_root" {
  type        = string
  default     = "output"
  description = "Where the images, the reports and the manifest go."
}

variable "stagehand_bin" {
  type    = string
  default = "stagehand"
}

variable "stage1_manifest" {
  type    = string
  default = "stages/stage1.yml"
}

variable "stage2_manifest" {
  type    = string
  default = "stages/testbox-stage2.yml"
}

variable "postgres_major" {
  type    = string
  default = "15"
}

variable "stagehand_args" {
  type        = list(string)
  default     = []
  description = "More stagehand arguments for both stages, e.g. [\"--vars-file\", \"vm.vars.yml\"] (stages/testbox-vars.sh --vm)."
}

variable "manifest_output" {
  type        = string
  default     = ""
  description = "Packer's manifest; empty: <output_root>/packer-manifest.json."
}

locals {
  provision = "'${replace(path.root, "'", "'\\''")}/../stagehand-provision.sh'"
  gate      = "'${replace(path.root, "'", "'\\''")}/../stagehand-gate.sh'"
  manifest  = var.manifest_output != "" ? var.manifest_output : "${var.output_root}/packer-manifest.json"

  # One build per stage and arch, named STAGE-ARCH (the -only names are
  # qemu.stage1-x86_64 ...): its manifest, input disk, and where its image
  # and report go. Packer builds in a work dir (its output_directory, which
  # it removes when the build fails); the gate's success moves the image
  # out of it. An arch given no inputs gets paths that cannot exist, so
  # `packer validate` passes and a build selected for it fails plainly.
  builds = {
    for p in setproduct(["stage1", "stage2"], ["x86_64", "aarch64"]) : "${p[0]}-${p[1]}" => {
      stage    = p[0]
      arch     = p[1]
      manifest = p[0] == "stage1" ? var.stage1_manifest : var.stage2_manifest
      input    = p[0] == "stage1" ? lookup(var.base_image, p[1], "/nonexistent/base-image-${p[1]}") : "${var.output_root}/stage1-${p[1]}.qcow2"
      work     = "${var.output_root}/.build-${p[0]}-${p[1]}"
      image    = "${var.output_root}/${p[0]}-${p[1]}.qcow2"
      report   = "${var.output_root}/reports/${p[0]}-${p[1]}"
      accel    = lookup(var.accelerator, p[1], "tcg")
    }
  }

  q_stagehand = "'${replace(var.stagehand_bin, "'", "'\\''")}'"
  q_key_file  = "'${replace(var.ssh_private_key_file, "'", "'\\''")}'"
  q_extra = join(" ", concat(
    ["--var", "'pg_major=${replace(var.postgres_major, "'", "'\\''")}'"],
    [for a in var.stagehand_args : "'${replace(a, "'", "'\\''")}'"]
  ))

  # Per arch: the emulator, the board, the CPU and the console.
  # aarch64: the virt board (PL011 console); under TCG, the cheap
  # pointer-authentication algorithm (tests/vm/vm does the same).
  qemu_binary = { x86_64 = "qemu-system-x86_64", aarch64 = "qemu-system-aarch64" }
  machine     = { x86_64 = "pc", aarch64 = "virt" }
  tcg_cpu     = { x86_64 = "max", aarch64 = "max,pauth-impdef=on" }
  console     = { x86_64 = "ttyS0", aarch64 = "ttyAMA0" }

  # The disk has no boot loader: boot the base image's kernel, root on the
  # whole virtio disk (tests/vm/vm does the same). Setting -drive replaces
  # Packer's own, so the build disk is given here too.
  qemuargs = {
    for name, b in local.builds : name => [
      ["-kernel", lookup(var.kernel, b.arch, "/nonexistent/kernel-${b.arch}")],
      ["-initrd", lookup(var.initrd, b.arch, "/nonexistent/initrd-${b.arch}")],
      ["-append", "console=${local.console[b.arch]} root=/dev/vda rw"],
      ["-cpu", b.accel == "kvm" ? "host" : local.tcg_cpu[b.arch]],
      ["-device", "virtio-net,netdev=user.0"],
      ["-device", "virtio-rng-pci"],
      ["-drive", "file=${b.work}/${name}.qcow2,if=virtio,cache=writeback,discard=ignore,format=qcow2"],
      ["-serial", "file:${b.report}.serial.log"],
      ["-drive", "file=${var.seed_image},format=raw,if=virtio,readonly=on"],
    ]
  }
}

source "qemu" "base" {
  disk_image           = true
  iso_checksum         = "none"
  format               = "qcow2"
  disk_size            = var.disk_size
  skip_compaction      = true
  cpus                 = var.cpus
  memory               = var.memory
  headless             = true
  net_device           = "virtio-net"
  disk_interface       = "virtio"
  boot_wait            = "1s"
  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "20m"
  shutdown_command     = "sudo -n systemctl poweroff"
  shutdown_timeout     = "5m"
}

# Packer 1.6 has no dynamic source blocks: the four builds are spelled
# out; everything that differs comes from local.builds and local.qemuargs.
build {
  source "source.qemu.base" {
    name             = "stage1-x86_64"
    iso_url          = local.builds["stage1-x86_64"].input
    output_directory = local.builds["stage1-x86_64"].work
    vm_name          = "stage1-x86_64.qcow2"
    accelerator      = local.builds["stage1-x86_64"].accel
    qemu_binary      = local.qemu_binary["x86_64"]
    machine_type     = local.machine["x86_64"]
    qemuargs         = local.qemuargs["stage1-x86_64"]
  }
  source "source.qemu.base" {
    name             = "stage1-aarch64"
    iso_url          = local.builds["stage1-aarch64"].input
    output_directory = local.builds["stage1-aarch64"].work
    vm_name          = "stage1-aarch64.qcow2"
    accelerator      = local.builds["stage1-aarch64"].accel
    qemu_binary      = local.qemu_binary["aarch64"]
    machine_type     = local.machine["aarch64"]
    qemuargs         = local.qemuargs["stage1-aarch64"]
  }
  source "source.qemu.base" {
    name             = "stage2-x86_64"
    iso_url          = local.builds["stage2-x86_64"].input
    output_directory = local.builds["stage2-x86_64"].work
    vm_name          = "stage2-x86_64.qcow2"
    accelerator      = local.builds["stage2-x86_64"].accel
    qemu_binary      = local.qemu_binary["x86_64"]
    machine_type     = local.machine["x86_64"]
    qemuargs         = local.qemuargs["stage2-x86_64"]
  }
  source "source.qemu.base" {
    name             = "stage2-aarch64"
    iso_url          = local.builds["stage2-aarch64"].input
    output_directory = local.builds["stage2-aarch64"].work
    vm_name          = "stage2-aarch64.qcow2"
    accelerator      = local.builds["stage2-aarch64"].accel
    qemu_binary      = local.qemu_binary["aarch64"]
    machine_type     = local.machine["aarch64"]
    qemuargs         = local.qemuargs["stage2-aarch64"]
  }

  # The guest is fresh and its host key unknown to Packer: stagehand
  # accepts the key it is shown (recorded in the report). The key text, if
  # Packer has it, goes through the script Packer writes, never argv.
  provisioner "shell-local" {
    inline = [
      "STAGEHAND_SSH_KEY=$(cat <<'STAGEHAND_KEY_EOF'\n${build.SSHPrivateKey}\nSTAGEHAND_KEY_EOF\n)",
      "export STAGEHAND_SSH_KEY",
      "exec ${local.provision} --stagehand ${local.q_stagehand} --manifest '${replace(local.builds[source.name].manifest, "'", "'\\''")}' --report '${replace(local.builds[source.name].report, "'", "'\\''")}' --host '${build.Host}' --port '${build.Port}' --user '${build.User}' --key-file ${local.q_key_file} --accept-new-host-key -- ${local.q_extra}",
    ]
  }

  # One chain: the gate first, so a failed gate stops the chain before the
  # manifest is written and the image moved (Packer then removes it).
  # Parallel builds share the manifest: its post-processor takes a lock
  # file beside it while it updates it.
  post-processors {
    post-processor "shell-local" {
      inline = ["${local.gate} --stagehand ${local.q_stagehand} '${replace(local.builds[source.name].report, "'", "'\\''")}'"]
    }

    post-processor "manifest" {
      output     = local.manifest
      strip_path = true
      custom_data = {
        build          = source.name
        arch           = local.builds[source.name].arch
        stage          = local.builds[source.name].stage
        image          = local.builds[source.name].image
        input          = local.builds[source.name].input
        manifest       = local.builds[source.name].manifest
        report         = local.builds[source.name].report
        postgres_major = var.postgres_major
        target_system  = try(jsondecode(file("${local.builds[source.name].report}/results.json")).target.system, "")
        status         = try(jsondecode(file("${local.builds[source.name].report}/results.json")).status, "missing")
        closure_root   = try(jsondecode(file("${local.builds[source.name].report}/results.json")).closure.root, "")
      }
    }

    post-processor "shell-local" {
      inline = [
        "mv -f '${replace(local.builds[source.name].work, "'", "'\\''")}/${source.name}.qcow2' '${replace(local.builds[source.name].image, "'", "'\\''")}'",
        "rmdir '${replace(local.builds[source.name].work, "'", "'\\''")}'",
        "echo \"image: ${replace(local.builds[source.name].image, "\"", "")}\"",
      ]
    }
  }
}
