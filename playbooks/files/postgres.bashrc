# ~postgres/.bashrc: written by stagehand (stage 1)
export LANGUAGE="en_US.UTF-8"
export LANG="en_US.UTF-8"
export LC_ALL="en_US.UTF-8"
export LC_CTYPE="en_US.UTF-8"
export LOCALE_ARCHIVE=/usr/lib/locale/locale-archive
