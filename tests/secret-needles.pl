#!/usr/bin/perl
# tests/secret-needles.pl: every way a secret could show in an output file,
# one per line, for `grep -F -f`. Reads the secrets, NUL-separated, on
# stdin; MIN (default 4, REDACT_FRAGMENT_MIN) is the shortest fragment.
#
# For each secret: the value, each line of a multi-line value (MIN bytes
# or more), and each of those with control characters as '?' (error
# lines); of each, every prefix and suffix of MIN bytes or more (what a
# cut leaves; a value shorter than MIN only whole), also trimmed to whole
# UTF-8 characters; and each of those raw, JSON-escaped (json.c's rules),
# XML-escaped as text and as an attribute, and inside sh single quotes.
# A needle that holds a newline is left out: its lines are needles.
use strict;
use warnings;

my $min = shift // 4;
my %needles;

sub json {
	my ($s) = @_;
	my $o = '';
	my %esc = ('"' => '\\"', '\\' => '\\\\', "\n" => '\\n', "\t" => '\\t',
		"\r" => '\\r', "\b" => '\\b', "\f" => '\\f');
	while (length $s) {
		if ($s =~ s/^([\x00-\x7f])//) {
			my $c = $1;
			$o .= exists $esc{$c} ? $esc{$c}
			    : (ord($c) < 0x20 || ord($c) == 0x7f) ? sprintf('\\u%04X', ord $c)
			    : $c;
		} elsif ($s =~ s/^([\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3})//) {
			$o .= $1;
		} else {
			$s =~ s/^.//s;
			$o .= "\xef\xbf\xbd";
		}
	}
	return $o;
}

sub xml {
	my ($s, $attr) = @_;
	$s =~ s/&/&amp;/g;
	$s =~ s/</&lt;/g;
	$s =~ s/>/&gt;/g;
	$s =~ s/"/&quot;/g;
	$s =~ s/'/&apos;/g;
	$s =~ s/\r/&#13;/g;
	if ($attr) {
		$s =~ s/\n/&#10;/g;
		$s =~ s/\t/&#9;/g;
	}
	return $s;
}

sub sh { my ($s) = @_; $s =~ s/'/'\\''/g; return $s; }

# f without a partial UTF-8 character at either end
sub trimmed {
	my ($s) = @_;
	$s =~ s/^[\x80-\xbf]+//;
	$s =~ s/[\xc0-\xff][\x80-\xbf]*$// if $s =~ /[\xc0-\xff][\x80-\xbf]*$/ &&
	    !($s =~ /([\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3})$/);
	return $s;
}

sub add {
	my ($f) = @_;
	for my $n ($f, trimmed($f)) {
		next if length($n) < ($min < length($f) ? $min : length($f));
		for my $form ($n, json($n), xml($n, 0), xml($n, 1), sh($n)) {
			$needles{$form} = 1 if length $form && $form !~ /\n/;
		}
	}
}

local $/ = "\0";
while (my $secret = <STDIN>) {
	chomp $secret;
	next unless length $secret;
	my @bases = ($secret);
	if ($secret =~ /\n/) {
		for my $line (split /\n/, $secret) {
			$line =~ s/\r$//;
			push @bases, $line if length($line) >= $min;
		}
	}
	push @bases, map { (my $c = $_) =~ s/[\x00-\x1f\x7f]/?/g; $c } @bases;
	for my $b (@bases) {
		my $l = length $b;
		if ($l < $min) { add($b); next; }
		for my $k ($min .. $l) {
			add(substr($b, 0, $k));
			add(substr($b, $l - $k));
		}
	}
}
print "$_\n" for sort keys %needles;
