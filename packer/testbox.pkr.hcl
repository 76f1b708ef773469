# packer/testbox.pkr.hcl: runs stage 1 then stage 2 through stagehand
# against a host that already exists (the built-in test box, or an EC2
# instance you started yourself), with Packer's null builder. No image is
# made. With mode = "plan" it is a dry run: stagehand probes read-only and
# reports what each step would change.
#
#   packer build -var host=10.213.N.2 -var ssh_private_key_file=KEY \
#     -var known_hosts_file=KNOWN_HOSTS packer/testbox.pkr.hcl
#
# Run it from the repository root (manifest and report paths are relative
# to the directory packer runs in). See packer/README.md.

variable "host" {
  type        = string
  description = "Address of the host to provision."
}

variable "port" {
  type    = number
  default = 22
}

variable "user" {
  type        = string
  default     = "builder"
  description = "SSH user on the host; needs passwordless sudo."
}

variable "ssh_private_key_file" {
  type        = string
  description = "Private key file (ed25519 or ECDSA) for Packer's connection, and for stagehand's unless ssh_private_key is set."
}

variable "ssh_private_key" {
  type        = string
  default     = ""
  sensitive   = true
  description = "Key text for stagehand, handed over in an environment variable (the null builder never fills build.SSHPrivateKey)."
}

variable "known_hosts_file" {
  type        = string
  default     = ""
  description = "known_hosts file that holds the host's key; stagehand checks the host key against it."
}

variable "accept_new_host_key" {
  type        = bool
  default     = false
  description = "With no known_hosts_file: trust the host key the host presents (recorded in the report)."
}

variable "arch" {
  type        = string
  default     = "x86_64"
  description = "Architecture of the host, for the report dir name (the report records the system stagehand saw)."
  validation {
    condition     = contains(["x86_64", "arm64"], var.arch)
    error_message = "The arch must be x86_64 or arm64."
  }
}

variable "mode" {
  type        = string
  default     = "run"
  description = "run: provision; plan: dry run, change nothing."
  validation {
    condition     = contains(["run", "plan"], var.mode)
    error_message = "The mode must be run or plan."
  }
}

variable "bastion_host" {
  type        = string
  default     = ""
  description = "A bastion (jump host) that Packer's communicator and stagehand both go through; empty: connect directly. Not with ssh_interface = session_manager."
}

variable "bastion_port" {
  type    = number
  default = 22
}

variable "bastion_username" {
  type        = string
  default     = ""
  description = "User on the bastion; empty: the instance's SSH user."
}

variable "bastion_private_key_file" {
  type        = string
  default     = ""
  description = "Private key file (ed25519 or ECDSA) for the bastion; empty: Packer uses the ssh-agent and stagehand the instance's key."
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
  type        = string
  default     = "stages/stage2.yml"
  description = "Stage 2 manifest. On the built-in test box: stages/testbox-stage2.yml, with the vars file of stages/testbox-vars.sh in stagehand_args."
}

variable "postgres_major" {
  type    = string
  default = "15"
}

variable "stagehand_args" {
  type        = list(string)
  default     = []
  description = "More stagehand arguments for both stages, e.g. [\"--var\", \"k=v\"]."
}

variable "report_root" {
  type    = string
  default = "stagehand-report"
}

variable "manifest_output" {
  type    = string
  default = "packer-manifest.json"
}

locals {
  provision = "'${replace(path.root, "'", "'\\''")}/stagehand-provision.sh'"
  gate      = "'${replace(path.root, "'", "'\\''")}/stagehand-gate.sh'"

  # Single-quoted for sh; these go into the provisioner's script.
  q_stagehand = "'${replace(var.stagehand_bin, "'", "'\\''")}'"
  q_stage1    = "'${replace(var.stage1_manifest, "'", "'\\''")}'"
  q_stage2    = "'${replace(var.stage2_manifest, "'", "'\\''")}'"
  q_key_file  = "'${replace(var.ssh_private_key_file, "'", "'\\''")}'"
  # stagehand-provision.sh's bastion options: the same bastion Packer's
  # communicator uses (ssh_bastion_* in the source).
  bastion_user = var.bastion_username != "" ? var.bastion_username : var.user
  bastion_args = var.bastion_host == "" ? "" : join(" ", concat(
    ["--bastion-host", "'${replace(var.bastion_host, "'", "'\\''")}'", "--bastion-port", "${var.bastion_port}"],
    ["--bastion-user", "'${replace(local.bastion_user, "'", "'\\''")}'"],
    var.bastion_private_key_file == "" ? [] : ["--bastion-key-file", "'${replace(var.bastion_private_key_file, "'", "'\\''")}'"]
  ))
  e_reports = replace(var.report_root, "'", "'\\''") # for use inside '...'
  q_extra = join(" ", concat(
    ["--var", "'pg_major=${replace(var.postgres_major, "'", "'\\''")}'"],
    [for a in var.stagehand_args : "'${replace(a, "'", "'\\''")}'"]
  ))
  host_key_args = var.known_hosts_file != "" ? "--known-hosts '${replace(var.known_hosts_file, "'", "'\\''")}'" : (var.accept_new_host_key ? "--accept-new-host-key" : "")

  # The key text goes into the script Packer writes (a 0700 temp file),
  # not into environment_vars: Packer 1.6.6 puts environment_vars on the
  # /bin/sh -c command line and in PACKER_LOG.
  key_to_env = "STAGEHAND_SSH_KEY=$(cat <<'STAGEHAND_KEY_EOF'\n${var.ssh_private_key}\nSTAGEHAND_KEY_EOF\n)\nexport STAGEHAND_SSH_KEY"
}

source "null" "testbox" {
  communicator                 = "ssh"
  ssh_host                     = var.host
  ssh_port                     = var.port
  ssh_username                 = var.user
  ssh_private_key_file         = var.ssh_private_key_file
  ssh_bastion_host             = var.bastion_host
  ssh_bastion_port             = var.bastion_port
  ssh_bastion_username         = local.bastion_user
  ssh_bastion_private_key_file = var.bastion_private_key_file
  ssh_bastion_agent_auth       = var.bastion_host != "" && var.bastion_private_key_file == ""
  ssh_timeout                  = "2m"
}

build {
  sources = ["source.null.testbox"]

  provisioner "shell-local" {
    inline = [
      local.key_to_env,
      "exec ${local.provision} --stagehand ${local.q_stagehand} --mode ${var.mode} --manifest ${local.q_stage1} --report '${local.e_reports}/${source.name}-${var.arch}/stage1' --host '${build.Host}' --port '${build.Port}' --user '${build.User}' --key-file ${local.q_key_file} ${local.host_key_args} ${local.bastion_args} -- ${local.q_extra}",
    ]
  }

  provisioner "shell-local" {
    inline = [
      local.key_to_env,
      "exec ${local.provision} --stagehand ${local.q_stagehand} --mode ${var.mode} --manifest ${local.q_stage2} --report '${local.e_reports}/${source.name}-${var.arch}/stage2' --host '${build.Host}' --port '${build.Port}' --user '${build.User}' --key-file ${local.q_key_file} ${local.host_key_args} ${local.bastion_args} -- ${local.q_extra}",
    ]
  }

  # One chain: the gate first, so a failed gate stops the chain before the
  # manifest is written.
  post-processors {
    post-processor "shell-local" {
      inline = [
        "${local.gate} --stagehand ${local.q_stagehand} '${local.e_reports}/${source.name}-${var.arch}/stage1' '${local.e_reports}/${source.name}-${var.arch}/stage2'",
      ]
    }

    # Packer 1.6.6 evaluates this block again when the post-processor runs,
    # after the provisioners, so file() sees the reports; the try()
    # fallbacks are what `packer validate` and the start of the build see.
    post-processor "manifest" {
      output     = var.manifest_output
      strip_path = true
      custom_data = {
        mode                = var.mode
        arch                = var.arch
        postgres_major      = var.postgres_major
        target_system       = try(jsondecode(file("${var.report_root}/${source.name}-${var.arch}/stage2/results.json")).target.system, "")
        stage1_manifest     = var.stage1_manifest
        stage1_report       = "${var.report_root}/${source.name}-${var.arch}/stage1"
        stage1_status       = try(jsondecode(file("${var.report_root}/${source.name}-${var.arch}/stage1/results.json")).status, "missing")
        stage1_closure_root = try(jsondecode(file("${var.report_root}/${source.name}-${var.arch}/stage1/results.json")).closure.root, "")
        stage2_manifest     = var.stage2_manifest
        stage2_report       = "${var.report_root}/${source.name}-${var.arch}/stage2"
        stage2_status       = try(jsondecode(file("${var.report_root}/${source.name}-${var.arch}/stage2/results.json")).status, "missing")
        stage2_closure_root = try(jsondecode(file("${var.report_root}/${source.name}-${var.arch}/stage2/results.json")).closure.root, "")
      }
    }
  }
}
