/* test_proto.c - placeholder until the proto module lands. */
#include "unit.h"

Suite *proto_suite(void)
{
	return suite_create("proto");
}
