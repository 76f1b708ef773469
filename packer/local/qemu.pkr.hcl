# packer/local/qemu.pkr.hcl: the two-stage image pipeline on this machine,
# with Packer's qemu builder instead of amazon-ebs. Stage 1 boots the VM
# tier's Debian 12 base image (tests/vm/vm image) and runs
# stages/stage1.yml; stage 2 boots stage 1's output and runs the stage 2
# manifest. As in the AMI templates, stagehand runs from a shell-local
# provisioner against build.Host/build.Port (the builder's host port
# forward), the gate post-processor fails the build on a report that did
# not pass, and the manifest post-processor records it. A stage that fails
# leaves no image: Packer removes the build's output directory, and the
# image is moved to image_dir only after the gate passed.
#
#   packer build -only=qemu.stage1 -var base_image=DISK -var kernel=VMLINUZ \
#     -var initrd=INITRD -var seed_image=SEED -var ssh_private_key_file=KEY \
#     -var 'stagehand_args=["--vars-file","VARS"]' packer/local/qemu.pkr.hcl
#   packer build -only=qemu.stage2 ... (same vars, another seed)
#
# packer/local/image.sh (`make image`) makes the inputs and runs both.
# Run it from the repository root. See packer/README.md.

variable "arch" {
  type    = string
  default = "x86_64"
  validation {
    condition     = contains(["x86_64", "aarch64"], var.arch)
    error_message = "The arch must be x86_64 or aarch64."
  }
}

variable "base_image" {
  type        = string
  description = "Stage 1's input disk: VM_IMAGE of tests/vm/vm image (qcow2, root fs on the whole disk)."
}

variable "kernel" {
  type        = string
  description = "The base image's kernel (VM_KERNEL of tests/vm/vm image); the disk has no boot loader."
}

variable "initrd" {
  type        = string
  description = "The base image's initrd (VM_INITRD of tests/vm/vm image)."
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

variable "accelerator" {
  type        = string
  default     = "tcg"
  description = "kvm or tcg: VM_ACCEL of tests/vm/vm image (its cached probe)."
  validation {
    condition     = contains(["kvm", "tcg"], var.accelerator)
    error_message = "The accelerator must be kvm or tcg."
  }
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

  # Per stage: the manifest, the input disk, and where its image goes.
  stage_manifest = { stage1 = var.stage1_manifest, stage2 = var.stage2_manifest }
  # Packer builds in a work dir (its output_directory, which it removes
  # when the build fails); the gate's success moves the image out of it.
  work = {
    stage1 = "${var.output_root}/.build-stage1-${var.arch}"
    stage2 = "${var.output_root}/.build-stage2-${var.arch}"
  }
  image = {
    stage1 = "${var.output_root}/stage1-${var.arch}.qcow2"
    stage2 = "${var.output_root}/stage2-${var.arch}.qcow2"
  }
  report = {
    stage1 = "${var.output_root}/reports/stage1-${var.arch}"
    stage2 = "${var.output_root}/reports/stage2-${var.arch}"
  }

  q_stagehand = "'${replace(var.stagehand_bin, "'", "'\\''")}'"
  q_key_file  = "'${replace(var.ssh_private_key_file, "'", "'\\''")}'"
  q_extra = join(" ", concat(
    ["--var", "'pg_major=${replace(var.postgres_major, "'", "'\\''")}'"],
    [for a in var.stagehand_args : "'${replace(a, "'", "'\\''")}'"]
  ))

  # The disk has no boot loader: boot the base image's kernel, root on the
  # whole virtio disk (tests/vm/vm does the same). Setting -drive replaces
  # Packer's own, so the build disk is given here too.
  # aarch64: the virt board (PL011 console); under TCG, the cheap
  # pointer-authentication algorithm (tests/vm/vm does the same).
  arm         = var.arch == "aarch64"
  qemu_binary = local.arm ? "qemu-system-aarch64" : "qemu-system-x86_64"
  machine     = local.arm ? "virt" : "pc"
  cpu         = var.accelerator == "kvm" ? "host" : (local.arm ? "max,pauth-impdef=on" : "max")
  console     = local.arm ? "ttyAMA0" : "ttyS0"
  boot_args = [
    ["-kernel", var.kernel],
    ["-initrd", var.initrd],
    ["-append", "console=${local.console} root=/dev/vda rw"],
    ["-cpu", local.cpu],
    ["-device", "virtio-net,netdev=user.0"],
    ["-device", "virtio-rng-pci"],
  ]
}

source "qemu" "base" {
  disk_image           = true
  iso_checksum         = "none"
  format               = "qcow2"
  disk_size            = var.disk_size
  skip_compaction      = true
  accelerator          = var.accelerator
  qemu_binary          = local.qemu_binary
  machine_type         = local.machine
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

build {
  source "source.qemu.base" {
    name             = "stage1"
    iso_url          = var.base_image
    output_directory = local.work["stage1"]
    vm_name          = "stage1-${var.arch}.qcow2"
    qemuargs = concat(local.boot_args, [
      ["-drive", "file=${local.work["stage1"]}/stage1-${var.arch}.qcow2,if=virtio,cache=writeback,discard=ignore,format=qcow2"],
      ["-serial", "file:${local.report["stage1"]}.serial.log"],
      ["-drive", "file=${var.seed_image},format=raw,if=virtio,readonly=on"],
    ])
  }
  source "source.qemu.base" {
    name             = "stage2"
    iso_url          = local.image["stage1"]
    output_directory = local.work["stage2"]
    vm_name          = "stage2-${var.arch}.qcow2"
    qemuargs = concat(local.boot_args, [
      ["-drive", "file=${local.work["stage2"]}/stage2-${var.arch}.qcow2,if=virtio,cache=writeback,discard=ignore,format=qcow2"],
      ["-serial", "file:${local.report["stage2"]}.serial.log"],
      ["-drive", "file=${var.seed_image},format=raw,if=virtio,readonly=on"],
    ])
  }

  # The guest is fresh and its host key unknown to Packer: stagehand
  # accepts the key it is shown (recorded in the report). The key text, if
  # Packer has it, goes through the script Packer writes, never argv.
  provisioner "shell-local" {
    inline = [
      "STAGEHAND_SSH_KEY=$(cat <<'STAGEHAND_KEY_EOF'\n${build.SSHPrivateKey}\nSTAGEHAND_KEY_EOF\n)",
      "export STAGEHAND_SSH_KEY",
      "exec ${local.provision} --stagehand ${local.q_stagehand} --manifest '${replace(local.stage_manifest[source.name], "'", "'\\''")}' --report '${replace(local.report[source.name], "'", "'\\''")}' --host '${build.Host}' --port '${build.Port}' --user '${build.User}' --key-file ${local.q_key_file} --accept-new-host-key -- ${local.q_extra}",
    ]
  }

  # One chain: the gate first, so a failed gate stops the chain before the
  # manifest is written and the image moved (Packer then removes it).
  post-processors {
    post-processor "shell-local" {
      inline = ["${local.gate} --stagehand ${local.q_stagehand} '${replace(local.report[source.name], "'", "'\\''")}'"]
    }

    post-processor "manifest" {
      output     = local.manifest
      strip_path = true
      custom_data = {
        arch           = var.arch
        stage          = source.name
        image          = local.image[source.name]
        input          = source.name == "stage1" ? var.base_image : local.image["stage1"]
        manifest       = local.stage_manifest[source.name]
        report         = local.report[source.name]
        postgres_major = var.postgres_major
        target_system  = try(jsondecode(file("${local.report[source.name]}/results.json")).target.system, "")
        status         = try(jsondecode(file("${local.report[source.name]}/results.json")).status, "missing")
        closure_root   = try(jsondecode(file("${local.report[source.name]}/results.json")).closure.root, "")
      }
    }

    post-processor "shell-local" {
      inline = [
        "mv -f '${replace(local.work[source.name], "'", "'\\''")}/${source.name}-${var.arch}.qcow2' '${replace(local.image[source.name], "'", "'\\''")}'",
        "rmdir '${replace(local.work[source.name], "'", "'\\''")}'",
        "echo \"image: ${replace(local.image[source.name], "\"", "")}\"",
      ]
    }
  }
}
