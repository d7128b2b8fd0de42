#!/usr/bin/perl
# Square every numeric argument; every square goes under the key "squares".
#
# **
# handler_type: mapper
use strict;
use warnings;
$| = 1;
print "{\"jobx\":\"return\"}\n";
while (my $line = <STDIN>) {
	if ($line =~ /^\[.*,\s*(-?\d+)\s*\]\s*$/) {
		my $n = $1;
		print "[\"squares\"," . ($n * $n) . "]\n";
	} else {
		die "want [name, integer], got $line";
	}
}
